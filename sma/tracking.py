"""Point tracks from any clip with no learned weights: good features to track + pyramidal Lucas-Kanade.

`track_points` finds up to ``max_points`` Shi-Tomasi corners in the first frame and follows them frame
by frame with OpenCV's pyramidal Lucas-Kanade optical flow. Each step is checked forward and backward
(a point tracked to the next frame and back must land within ``fb_threshold`` px of where it started);
a point that fails any step, or leaves the frame, is dropped, so every returned track covers every frame.

The clip is turned into one grey channel (luma for RGB, the channel mean otherwise) and stretched to the
clip's own value range, so a global brightness or contrast change of a clip gives the same tracks.
The tracks feed `sma.metrics.trajectory_fidelity` (the motion-fidelity score of Yatim et al.).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .errors import SMAInputError

LUMA = (0.299, 0.587, 0.114)
FLAT_RANGE = 1e-6
"""A clip whose values span less than this has nothing to track."""

STILL_PX = 0.2
"""Tracked displacements shorter than this (px per frame) count as no motion: about twice the tracker's
95th-percentile error on sub-pixel pans, so the jitter of a static point (video compression) has no direction."""


@dataclass(frozen=True)
class TrackerConfig:
    """Settings of `track_points`.

    Attributes:
        max_points: most corners to track.
        quality: corners weaker than this fraction of the strongest are ignored (Shi-Tomasi).
        min_distance: least distance between corners in px; None = 1/32 of the shorter side, at least 3.
        window: side of the Lucas-Kanade window in px (odd).
        levels: pyramid levels above the full frame (motions up to about ``window * 2**levels / 2`` px).
        fb_threshold: largest forward-backward error in px for a point to be kept.
    """

    max_points: int = 256
    quality: float = 0.01
    min_distance: float | None = None
    window: int = 21
    levels: int = 3
    fb_threshold: float = 1.0

    def __post_init__(self) -> None:
        if self.max_points < 1 or not 0 < self.quality < 1 or self.window < 3 or self.window % 2 == 0 \
                or self.levels < 0 or self.fb_threshold <= 0:
            raise SMAInputError(
                f"tracker settings out of range: {self} (max_points >= 1, 0 < quality < 1, odd window >= 3, "
                "levels >= 0, fb_threshold > 0)")


def _cv2():
    try:
        import cv2
    except ImportError as error:
        raise SMAInputError("point tracking needs OpenCV: pip install opencv-python-headless") from error
    return cv2


def grey_frames(video: Tensor) -> np.ndarray:
    """``[F, C, H, W]`` float -> ``[F, H, W]`` uint8, luma (C = 3) or channel mean, stretched to 0..255
    over the whole clip; all zeros when the clip is flat."""
    x = video.detach().float().cpu()
    grey = torch.einsum("fchw,c->fhw", x, torch.tensor(LUMA)) if x.shape[1] == 3 else x.mean(dim=1)
    low, high = float(grey.min()), float(grey.max())
    if high - low < FLAT_RANGE:
        return np.zeros(tuple(grey.shape), dtype=np.uint8)
    return ((grey - low) * (255.0 / (high - low))).round().to(torch.uint8).numpy()


def track_points(video: Tensor, config: TrackerConfig = TrackerConfig()) -> Tensor:
    """Track corners of the first frame through a clip.

    Args:
        video: ``[F, C, H, W]`` float (e.g. from `sma.metrics.as_video`), F >= 2.

    Returns:
        ``[P, F, 2]`` float32 ``(x, y)`` in px (pixel centres at integers); P may be 0 (a flat clip, or every
        point lost).
    """
    if video.ndim != 4 or video.shape[0] < 2:
        raise SMAInputError(f"tracking needs a clip [F, C, H, W] with F >= 2, got shape {tuple(video.shape)}")
    cv2 = _cv2()
    frames = grey_frames(video)
    height, width = frames.shape[1:]
    min_distance = config.min_distance or max(3.0, min(height, width) / 32)
    corners = cv2.goodFeaturesToTrack(frames[0], maxCorners=config.max_points, qualityLevel=config.quality,
                                      minDistance=min_distance, blockSize=7)
    if corners is None or not frames.any():
        return torch.zeros(0, frames.shape[0], 2)
    lk = dict(winSize=(config.window, config.window), maxLevel=config.levels,
              criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01))
    points = corners.reshape(-1, 1, 2).astype(np.float32)
    tracks = [points]
    alive = np.ones(len(points), dtype=bool)
    for f in range(1, frames.shape[0]):
        forward, ok_f, _ = cv2.calcOpticalFlowPyrLK(frames[f - 1], frames[f], tracks[-1], None, **lk)
        back, ok_b, _ = cv2.calcOpticalFlowPyrLK(frames[f], frames[f - 1], forward, None, **lk)
        error = np.linalg.norm((back - tracks[-1]).reshape(-1, 2), axis=1)
        inside = ((forward[:, 0, 0] >= 0) & (forward[:, 0, 0] <= width - 1)
                  & (forward[:, 0, 1] >= 0) & (forward[:, 0, 1] <= height - 1))
        alive &= ok_f.ravel().astype(bool) & ok_b.ravel().astype(bool) & (error < config.fb_threshold) & inside
        tracks.append(forward)
    stacked = np.stack([t.reshape(-1, 2) for t in tracks], axis=1)  # [P, F, 2]
    return torch.from_numpy(stacked[alive]).float()
