"""Is the generated subject B, or a copy of the reference? Shape identity and the copy score.

A colour-only detector cannot tell a new subject from a recoloured copy of the reference, nor (when B
shares A's colours) B's shape from A's. Two checks close that gap:

- :func:`shape_match`: per frame, the tracked blob of B's colour against B's shape and A's shape drawn at
  the tracked pose (kind, size and elongation): soft IoU with each. B is *identified* in a frame when its
  colour is found (:func:`.tracker.track`), its shape fits with IoU >= :data:`MIN_SHAPE_IOU`, and it fits
  at least as well as A's shape.
- :func:`copy_ratio`: pixel MSE of a sample to the reference clip over its MSE to the ideal output (B's
  appearance moving with the reference's motion). Below 1 the sample is closer to the reference: a copy.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .tracker import Track, colour_mask, main_blob
from .world import Appearance, Poses, Scene, coverage

MIN_SHAPE_IOU = 0.5
"""Soft IoU of the tracked blob with B's shape at the tracked pose above which the shape counts as B's."""
HEADINGS = 24
"""Headings (every 15 degrees) at which a candidate shape is fitted to the blob."""


def _pose_scene(appearance: Appearance, shape: int, centre: Tensor, angle: Tensor, scale: Tensor,
                height: int, width: int) -> Scene:
    """One shape of ``appearance`` (slot ``shape``) at per-frame poses ``centre [F, 2]``, ``angle [F]``, ``scale [F]``."""
    single = appearance.select(slice(0, 1))
    keep = torch.zeros_like(single.present)
    keep[0, shape] = 1.0
    one = Appearance(**{**vars(single), "present": keep})
    frames = centre.shape[0]
    p = single.present.shape[1]
    full = lambda values: values.float()[None, None].expand(1, p, frames).clone()  # noqa: E731
    poses = Poses(full(centre[:, 0]), full(centre[:, 1]), full(angle), full(scale), ("tracked",))
    return Scene(one, poses, height, width)


def _soft_iou(a: Tensor, b: Tensor) -> Tensor:
    """Soft IoU per frame of coverages ``[F, H, W]``."""
    return torch.minimum(a, b).sum(dim=(-2, -1)) / torch.maximum(a, b).sum(dim=(-2, -1)).clamp(min=1e-9)


def _best_fit(mask: Tensor, appearance: Appearance, shape: int, t: Track) -> Tensor:
    """Per-frame IoU ``[F]`` of ``mask`` with the shape drawn at the track's centre, at the scale that gives it the
    blob's area, and at the best of :data:`HEADINGS` headings around the tracker's axis (that axis is modulo pi
    and ill-defined for a squat triangle, whose shape is not symmetric under a half turn)."""
    h, w = mask.shape[-2:]
    centre = torch.nan_to_num(t.centre.float(), nan=0.0)
    angle = torch.nan_to_num(t.angle.float(), nan=0.0)
    scale = (t.area.float() / float(appearance.area()[0, shape])).clamp(min=1e-6).sqrt()
    fits = [_soft_iou(mask, coverage(_pose_scene(appearance, shape, centre, angle + 2 * math.pi * turn / HEADINGS,
                                                 scale, h, w))[0, shape])
            for turn in torch.arange(HEADINGS).tolist()]
    return torch.stack(fits).amax(0)


def shape_match(frames: Tensor, t: Track, target: Appearance, reference: Appearance, shape: int,
                colour: Tensor) -> tuple[Tensor, Tensor]:
    """IoU ``[F]`` of B's tracked blob with B's shape and with A's shape (slot ``shape`` of each), at the pose
    the tracker read; 0 where the colour was not found. ``frames [F, H, W, 3]``, ``colour`` B's RGB ``[3]``."""
    mask = main_blob(colour_mask(frames.float(), colour)).float()
    own = _best_fit(mask, target, shape, t)
    other = _best_fit(mask, reference, shape, t)
    zero = torch.zeros_like(own)
    return torch.where(t.found, own, zero), torch.where(t.found, other, zero)


def identified(own_iou: Tensor, other_iou: Tensor) -> Tensor:
    """Frames ``[F]`` (bool) where B's shape fits well and at least as well as A's."""
    return (own_iou >= MIN_SHAPE_IOU) & (own_iou >= other_iou)


def copy_ratio(sample: Tensor, reference: Tensor, ideal: Tensor) -> float:
    """MSE(sample, reference) / MSE(sample, ideal) for clips ``[F, H, W, 3]``: below 1 = closer to the reference."""
    to_reference = float(((sample - reference) ** 2).mean())
    to_ideal = float(((sample - ideal) ** 2).mean())
    return to_reference / max(to_ideal, 1e-12)
