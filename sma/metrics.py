"""Motion fidelity: how closely one clip's motion follows another's (the numbers the trainer logs).

Three measures on the motion vectors ``dz[f] = z[f + 1] - z[f]`` (see `loss.motion_vectors`) of two
clips of the same length, plus one on point tracks:

- **motion cosine** (`frame_pair_cosine`, `motion_cosine`): per frame pair ``f``, the cosine between the
  flattened signed motion vectors of the two clips, averaged over the ``F - 1`` pairs. 1 = the same
  motion pattern (any speed), 0 = unrelated, -1 = the opposite motion. Zero motion (a motion vector
  whose RMS is at most ``still_rms``, a numerical zero) has no direction, so for that pair: both still
  -> 1 (they agree), exactly one still -> 0 (nothing in common). The cosine compares motion at the
  same places: in latents (an object moves a fraction of a latent pixel per frame) a reversed clip scores
  near -1, while in pixels, where the object has left the places it was, reversed or unrelated motion
  both score near 0. Speed is not seen by the cosine; the distances see it.
- **global / local distance** (`spectral_distances`): the SMA wavelet (global) and Fourier (local)
  terms of `loss.SMALoss` between the clips, computed by the loss itself, without timestep weight and
  independent of the lambdas. 0 = identical motion. Same formulas as training (``plus`` mode by default).
- **trajectory score** (`trajectory_fidelity`): the motion-fidelity score of Yatim et al. (CVPR 2024) on
  point tracks ``[P, F, 2]``: given ones (e.g. the ground-truth trajectories of synthetic clips), or by
  default tracked in both clips by `sma.tracking.track_points` (corners + pyramidal Lucas-Kanade, no
  learned weights), so any two videos get the score.

`motion_metrics` (batched latents ``[B, F, C, H, W]``, what the trainer logs) and `motion_fidelity`
(one clip each, IMAGE or latents, what the node shows) are the same code path.

Clip inputs: ``[F, C, H, W]`` (latents, channels first) or ``[F, H, W, C]`` (ComfyUI IMAGE, channels
last), float (uint8 is scaled to 0..1). Both clips need the same frame count and channel count; a
different frame size is resized to the first clip's (bilinear, antialiased) and noted in the result.
Different frame counts are refused rather than truncated: a shorter clip compared with the start of a
longer one would report a meaningless alignment.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import SMAInputError
from .loss import SMAConfig, SMALoss
from .tracking import STILL_PX as TRACKED_STILL_PX
from .tracking import TrackerConfig, track_points

MIN_FRAMES = 3
"""Frames a clip needs for the metrics: 2 motion vectors, the least the wavelet distance works on."""

STILL_RMS = 1e-6
"""Motion vectors with an RMS at or below this count as no motion (a numerical zero, not a perceptual
one: a compressed 'static' video has codec noise above it)."""

STILL_PX = 1e-3
"""Track displacements shorter than this many pixels count as no motion in `trajectory_fidelity`."""

Layout = Literal["auto", "channels_first", "channels_last"]
_CHANNEL_COUNTS = (1, 2, 3, 4)


# ----------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------


def _tensor(x: Tensor | np.ndarray) -> Tensor:
    """``x`` as a tensor (numpy arrays of any strides, e.g. reversed views, are copied)."""
    return torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else torch.as_tensor(x)


def as_video(video: Tensor | np.ndarray, layout: Layout = "auto", name: str = "video") -> Tensor:
    """Bring one clip to ``[F, C, H, W]`` float32 on its device.

    Args:
        video: ``[F, C, H, W]`` (``channels_first``, e.g. latents ``[F, 4, h, w]``) or ``[F, H, W, C]``
            (``channels_last``, e.g. a ComfyUI IMAGE ``[F, H, W, 3]``), float or uint8 (scaled to 0..1).
        layout: ``auto`` decides by which axis (1 or 3) holds 1..4 values and refuses ambiguous shapes.
        name: how error messages call the clip.
    """
    x = _tensor(video)
    if x.ndim != 4:
        raise SMAInputError(
            f"{name} must be a clip [F, C, H, W] (latents) or [F, H, W, C] (IMAGE), got shape {tuple(x.shape)}")
    if layout == "auto":
        first, last = x.shape[1] in _CHANNEL_COUNTS, x.shape[3] in _CHANNEL_COUNTS
        if first == last:
            raise SMAInputError(
                f"cannot tell the channel axis of {name} with shape {tuple(x.shape)}: pass layout='channels_first' "
                "([F, C, H, W]) or 'channels_last' ([F, H, W, C])")
        layout = "channels_first" if first else "channels_last"
    if layout == "channels_last":
        x = x.permute(0, 3, 1, 2)
    elif layout != "channels_first":
        raise SMAInputError(f"unknown layout {layout!r}: allowed are auto, channels_first, channels_last")
    if x.dtype == torch.uint8:
        x = x.float() / 255.0
    elif not x.dtype.is_floating_point:
        raise SMAInputError(f"{name} must hold floating-point (or uint8) values, got dtype {x.dtype}")
    x = x.float()
    if not bool(torch.isfinite(x).all()):
        raise SMAInputError(f"{name} contains NaN or inf values")
    if x.shape[0] < MIN_FRAMES:
        raise SMAInputError(
            f"{name} has {x.shape[0]} frame(s): motion metrics need at least {MIN_FRAMES} frames "
            f"({MIN_FRAMES - 1} motion vectors)")
    return x.contiguous()


def match_videos(a: Tensor, b: Tensor, names: tuple[str, str] = ("reference", "generated")) -> tuple[Tensor, Tensor, str]:
    """Check two ``[F, C, H, W]`` clips fit together; resize ``b`` to ``a``'s frame size if needed.

    Returns ``(a, b_matched, note)``; ``note`` says what was resized ("" if nothing). Different frame or
    channel counts raise SMAInputError naming both.
    """
    if a.shape[0] != b.shape[0]:
        raise SMAInputError(
            f"{names[0]} has {a.shape[0]} frames but {names[1]} has {b.shape[0]}: motion is compared frame pair "
            "by frame pair, so both clips need the same number of frames (load them with the same frame cap)")
    if a.shape[1] != b.shape[1]:
        raise SMAInputError(
            f"{names[0]} has {a.shape[1]} channels but {names[1]} has {b.shape[1]}: compare images with images "
            "and latents with latents")
    note = ""
    if a.shape[2:] != b.shape[2:]:
        note = (f"{names[1]} resized from {b.shape[3]}x{b.shape[2]} to {a.shape[3]}x{a.shape[2]} "
                f"(the size of {names[0]})")
        b = F.interpolate(b, size=tuple(a.shape[2:]), mode="bilinear", align_corners=False, antialias=True)
    return a, b.to(a.device), note


# ----------------------------------------------------------------------------------------------
# Batched measures on [B, F, C, H, W]
# ----------------------------------------------------------------------------------------------


def _check_pair(pred: Tensor, target: Tensor) -> None:
    for name, z in (("pred", pred), ("target", target)):
        if not isinstance(z, Tensor) or z.ndim != 5:
            raise SMAInputError(f"{name} must be a tensor [B, F, C, H, W], got {getattr(z, 'shape', type(z).__name__)}")
    if pred.shape != target.shape:
        raise SMAInputError(f"pred has shape {tuple(pred.shape)} but target has {tuple(target.shape)}: they must match")


def _cosine_with_still(dot: Tensor, norm_u: Tensor, norm_v: Tensor, still: float) -> Tensor:
    """``dot / (norm_u * norm_v)`` with the zero-motion rule: both norms <= ``still`` -> 1, one -> 0."""
    moving_u, moving_v = norm_u > still, norm_v > still
    cos = (dot / (norm_u * norm_v).clamp_min(torch.finfo(dot.dtype).tiny)).clamp(-1.0, 1.0)
    cos = torch.where(moving_u & moving_v, cos, torch.zeros_like(cos))
    return torch.where(~moving_u & ~moving_v, torch.ones_like(cos), cos)


@torch.no_grad()
def frame_pair_cosine(pred: Tensor, target: Tensor, still_rms: float = STILL_RMS) -> Tensor:
    """Cosine between the flattened signed motion vectors of two clips, per frame pair.

    Args:
        pred, target: ``[B, F, C, H, W]``, F >= 2.
        still_rms: motion vectors with RMS <= this count as still (see module docstring for the rule).

    Returns:
        ``[B, F - 1]`` float64 in [-1, 1]; computed in float64 one frame pair at a time (memory: one frame).
    """
    _check_pair(pred, target)
    if pred.shape[1] < 2:
        raise SMAInputError(f"motion needs at least 2 frames, got shape {tuple(pred.shape)}")
    still = still_rms * math.sqrt(pred[0, 0].numel())  # the RMS threshold as a norm threshold
    pairs = []
    for f in range(pred.shape[1] - 1):
        u = (pred[:, f + 1].double() - pred[:, f].double()).flatten(1)
        v = (target[:, f + 1].double() - target[:, f].double()).flatten(1)
        pairs.append(_cosine_with_still((u * v).sum(dim=1), u.norm(dim=1), v.norm(dim=1), still))
    return torch.stack(pairs, dim=1)


def motion_cosine(pred: Tensor, target: Tensor, still_rms: float = STILL_RMS) -> float:
    """Mean of `frame_pair_cosine` over samples and frame pairs."""
    return float(frame_pair_cosine(pred, target, still_rms).mean())


@dataclass(frozen=True)
class SpectralDistances:
    """SMA distances between two clips (batch means, floats; 0 = identical motion).

    ``global_``: wavelet term (level weights applied); ``bands``: its per-band L1, order
    ``approx_J, detail_1, ..., detail_J``; ``local = local_amplitude + local_phase``: Fourier term.
    """

    global_: float
    local: float
    local_amplitude: float
    local_phase: float
    bands: tuple[float, ...]


def spectral_distances(pred: Tensor, target: Tensor, config: SMAConfig | None = None) -> SpectralDistances:
    """The SMA wavelet and Fourier terms between ``pred`` and ``target`` ``[B, F, C, H, W]``.

    Computed by `SMALoss` with ``config`` (default: plus mode) and no timestep weight. Both terms are
    always computed: the lambdas only scale the training loss, not these distances.
    """
    _check_pair(pred, target)
    config = config if config is not None else SMAConfig()
    loss = SMALoss(dataclasses.replace(config, lambda_global=1.0, lambda_local=1.0))
    with torch.no_grad():
        out = loss(pred.detach(), target.detach())
    return SpectralDistances(
        global_=float(out.global_), local=float(out.local), local_amplitude=float(out.local_amplitude),
        local_phase=float(out.local_phase), bands=tuple(float(b) for b in out.global_bands))


def motion_metrics(pred: Tensor, target: Tensor, config: SMAConfig | None = None,
                   still_rms: float = STILL_RMS) -> dict[str, float]:
    """What the trainer logs: ``motion_cosine``, ``global_distance``, ``local_distance`` of ``pred``
    (e.g. ``z0_hat``) against ``target`` (reference latents), both ``[B, F, C, H, W]``."""
    distances = spectral_distances(pred, target, config)
    return {"motion_cosine": motion_cosine(pred, target, still_rms),
            "global_distance": distances.global_,
            "local_distance": distances.local}


# ----------------------------------------------------------------------------------------------
# Point tracks
# ----------------------------------------------------------------------------------------------


def _check_tracks(tracks: Tensor | np.ndarray, name: str) -> Tensor:
    t = _tensor(tracks).to(torch.float64)
    if t.ndim != 3 or t.shape[-1] != 2 or t.shape[0] < 1 or t.shape[1] < 2:
        raise SMAInputError(
            f"{name} must be point tracks [P, F, 2] (x, y per frame) with P >= 1 and F >= 2, got shape {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise SMAInputError(f"{name} contains NaN or inf coordinates (drop invisible points first)")
    return t


def track_correlation(tracks_in: Tensor | np.ndarray, tracks_out: Tensor | np.ndarray,
                      still_px: float = STILL_PX) -> Tensor:
    """``corr[q, p]``: mean over frame steps of the cosine between the displacements of output track ``q``
    and input track ``p``. Tracks ``[P, F, 2]`` / ``[Q, F, 2]``; returns ``[Q, P]`` float64.

    Displacements shorter than ``still_px`` are still: both still -> 1, one still -> 0."""
    t_in, t_out = _check_tracks(tracks_in, "tracks_in"), _check_tracks(tracks_out, "tracks_out")
    if t_in.shape[1] != t_out.shape[1]:
        raise SMAInputError(
            f"tracks_in cover {t_in.shape[1]} frames but tracks_out cover {t_out.shape[1]}: they must cover the same frames")
    v_in = (t_in[:, 1:] - t_in[:, :-1])[None]  # [1, P, F-1, 2]
    v_out = (t_out[:, 1:] - t_out[:, :-1])[:, None]  # [Q, 1, F-1, 2]
    dot = (v_out * v_in).sum(dim=-1)  # [Q, P, F-1]
    return _cosine_with_still(dot, v_out.norm(dim=-1), v_in.norm(dim=-1), still_px).mean(dim=-1)


def trajectory_fidelity(tracks_in: Tensor | np.ndarray, tracks_out: Tensor | np.ndarray,
                        symmetric: bool = True, still_px: float = STILL_PX) -> float:
    """Motion-fidelity score of Yatim et al. (CVPR 2024) between input and output point tracks.

    With ``corr`` from `track_correlation`: each output track is matched with its best input track,
    ``out_to_in = mean_q max_p corr[q, p]``; ``symmetric`` also matches each input track,
    ``in_to_out = mean_p max_q corr[q, p]``, and returns the mean of both (a generated clip must neither
    invent nor drop motions). Range [-1, 1]; 1 when every track moves like its match at every step.

    Args:
        tracks_in: ``[P, F, 2]`` (x, y) of the reference clip's points; tracks_out: ``[Q, F, 2]``.
    """
    corr = track_correlation(tracks_in, tracks_out, still_px)
    out_to_in = corr.max(dim=1).values.mean()
    if not symmetric:
        return float(out_to_in)
    return float((out_to_in + corr.max(dim=0).values.mean()) / 2)


# ----------------------------------------------------------------------------------------------
# One pair of clips
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MotionFidelity:
    """How closely a generated clip's motion follows the reference (see the module docstring).

    ``cosine`` in [-1, 1] (1 best); ``global_distance`` / ``local_distance`` >= 0 (0 best);
    ``trajectory_score`` in [-1, 1] or None without tracks; ``tracked_points`` (reference, generated) when
    the clips were tracked; ``frames`` compared; ``note`` about resizing or tracking.
    """

    cosine: float
    global_distance: float
    local_distance: float
    trajectory_score: float | None = None
    frames: int = 0
    note: str = ""
    tracked_points: tuple[int, int] | None = None

    def summary(self) -> str:
        """A few lines a person can read, each with the value that means a perfect match."""
        lines = [
            f"motion cosine {self.cosine:.3f} (1 = same motion, 0 = unrelated, -1 = opposite)",
            f"wavelet (global) distance {self.global_distance:.4g} (0 = same motion over time)",
            f"Fourier (local) distance {self.local_distance:.4g} (0 = same motion within frames)",
        ]
        if self.trajectory_score is not None:
            tracked = (f"; {self.tracked_points[0]} / {self.tracked_points[1]} points tracked"
                       if self.tracked_points else "")
            lines.append(f"trajectory score {self.trajectory_score:.3f} (1 = tracks move alike, "
                         f"-1 = opposite, 0 = unrelated or still{tracked})")
        lines.append(f"over {self.frames} frames ({max(self.frames - 1, 0)} frame pairs)")
        if self.note:
            lines.append(f"note: {self.note}")
        return "\n".join(lines)


def motion_fidelity(video_a: Tensor | np.ndarray, video_b: Tensor | np.ndarray, config: SMAConfig | None = None,
                    tracks_a: Tensor | np.ndarray | None = None, tracks_b: Tensor | np.ndarray | None = None,
                    layout: Layout = "auto", still_rms: float = STILL_RMS, track: bool = True,
                    tracker: TrackerConfig = TrackerConfig()) -> MotionFidelity:
    """Motion fidelity of clip ``video_b`` (generated) to ``video_a`` (reference).

    Args:
        video_a, video_b: ``[F, C, H, W]`` or ``[F, H, W, C]`` (see `as_video`), F >= `MIN_FRAMES`, same F
            and C; ``video_b`` is resized to ``video_a``'s frame size if they differ.
        config: SMA settings of the distances (default plus mode).
        tracks_a, tracks_b: optional point tracks ``[P, F, 2]`` / ``[Q, F, 2]`` for `trajectory_fidelity`.
        layout: channel layout of both clips (``auto`` guesses per clip).
        track: without given tracks, track both clips (`sma.tracking.track_points` with ``tracker``) for
            the trajectory score; False leaves it None.
    """
    a = as_video(video_a, layout, "reference")
    b = as_video(video_b, layout, "generated")
    a, b, note = match_videos(a, b)
    if (tracks_a is None) != (tracks_b is None):
        raise SMAInputError("pass point tracks for both clips (tracks_a and tracks_b) or for neither")
    score = tracked = None
    still_px = STILL_PX
    if tracks_a is None and track:
        still_px = TRACKED_STILL_PX
        tracks_a, tracks_b = track_points(a, tracker), track_points(b, tracker)
        tracked = (tracks_a.shape[0], tracks_b.shape[0])
        if min(tracked) == 0:
            empty = " and ".join(n for n, t in zip(("reference", "generated"), tracked) if t == 0)
            note = "; ".join(filter(None, (note, f"no trajectory score: no point of the {empty} clip could be "
                                                  "tracked through every frame (flat or too fast)")))
            tracks_a = tracks_b = None
    if tracks_a is not None:
        frames_a, frames_b = _check_tracks(tracks_a, "tracks_a").shape[1], _check_tracks(tracks_b, "tracks_b").shape[1]
        if (frames_a, frames_b) != (a.shape[0],) * 2:
            raise SMAInputError(
                f"the tracks cover {frames_a} and {frames_b} frames but the clips have {a.shape[0]}: "
                "track the same frames that are compared")
        score = trajectory_fidelity(tracks_a, tracks_b, still_px=still_px)
    metrics = motion_metrics(a[None], b[None], config, still_rms)
    return MotionFidelity(cosine=metrics["motion_cosine"], global_distance=metrics["global_distance"],
                          local_distance=metrics["local_distance"], trajectory_score=score,
                          frames=a.shape[0], note=note, tracked_points=tracked)
