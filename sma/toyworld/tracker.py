"""Track a coloured shape in frames by its colour, and compare its motion with a known one.

The background of toy clips is grey, so a pixel ``(1 - a) grey + a colour`` has chroma (max - min over
RGB) ``a * chroma(colour)`` and the colour's hue: :func:`colour_mask` recovers the coverage ``a`` of
one colour from the frames alone. :func:`track` turns the mask into a pose per frame: centroid,
orientation of the major axis (second moments; defined modulo pi) and scale (square root of the area
relative to the shape's nominal area), measured on the connected blob around the mask's densest spot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

HUE_TOLERANCE = math.radians(30)
MASK_FLOOR = 0.3
"""Coverage below this counts as background (sensor noise and drift stay well below it)."""
AREA_RANGE = (0.3, 4.0)
"""A frame counts as 'found' when the masked area is within this factor range of the nominal area ..."""
MAX_SPREAD = 2.0
MIN_ELONGATION = 1.2
"""Orientation is only read from masks at least this elongated (major / minor std); rounder blobs have none."""
"""... and the mask is one compact blob: its radius of gyration at most this factor times the shape's."""


def _hue_chroma(frames: Tensor) -> tuple[Tensor, Tensor]:
    """Hue (radians) and chroma of RGB ``[..., 3]`` pixels."""
    r, g, b = frames.unbind(-1)
    chroma = frames.amax(-1) - frames.amin(-1)
    hue = torch.atan2(math.sqrt(3) * (g - b), 2 * r - g - b)
    return hue, chroma


def colour_mask(frames: Tensor, colour: Tensor) -> Tensor:
    """Estimated coverage ``[..., H, W]`` in 0..1 of ``colour`` (RGB ``[3]``) in ``frames [..., H, W, 3]``."""
    hue, chroma = _hue_chroma(frames)
    target_hue, target_chroma = _hue_chroma(colour.to(frames))
    close = torch.cos(hue - target_hue) >= math.cos(HUE_TOLERANCE)
    alpha = (chroma / target_chroma.clamp(min=1e-6)).clamp(0, 1)
    return torch.where(close & (alpha >= MASK_FLOOR), alpha, torch.zeros_like(alpha))


def main_blob(mask: Tensor) -> Tensor:
    """``mask [F, H, W]`` restricted to the 8-connected region around its densest 3 x 3 spot per frame,
    so isolated speckles of the colour (sampling noise) do not move the centroid."""
    frames = mask[:, None].float()
    density = F.avg_pool2d(frames, 3, stride=1, padding=1).flatten(1)  # [F, H*W]
    seed = torch.zeros_like(density)
    seed[torch.arange(len(seed)), density.argmax(dim=1)] = 1.0
    region = seed.view_as(frames) * (frames > 0)
    inside = (frames > 0).float()
    for _ in range(mask.shape[-1] + mask.shape[-2]):
        grown = F.max_pool2d(region, 3, stride=1, padding=1) * inside
        if torch.equal(grown, region):
            break
        region = grown
    return mask * region[:, 0]


@dataclass
class Track:
    """Per-frame pose of one tracked shape (all ``[F]``; NaN where not found).

    ``found`` (bool), ``centre`` ``[F, 2]`` (x, y px), ``angle`` (radians, modulo pi), ``scale``
    (sqrt of area / nominal area), ``area`` (px, also where not found), ``elongation`` (major / minor
    standard deviation)."""

    found: Tensor
    centre: Tensor
    angle: Tensor
    scale: Tensor
    area: Tensor
    elongation: Tensor


def track(frames: Tensor, colour: Tensor, nominal_area: float, nominal_radius: float) -> Track:
    """Track the shape of ``colour`` (RGB ``[3]``) in ``frames [F, H, W, 3]``.

    ``nominal_area`` / ``nominal_radius``: its area (px) and radius of gyration (px) at scale 1 (see
    ``Appearance.area`` and ``Appearance.radius``).
    """
    mask = main_blob(colour_mask(frames.float(), colour)).double()  # [F, H, W]
    h, w = mask.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                            indexing="ij")
    area = mask.sum(dim=(-2, -1))
    safe = area.clamp(min=1e-9)
    cx = (mask * xs).sum(dim=(-2, -1)) / safe
    cy = (mask * ys).sum(dim=(-2, -1)) / safe
    dx, dy = xs - cx[:, None, None], ys - cy[:, None, None]
    mxx = (mask * dx * dx).sum(dim=(-2, -1)) / safe
    myy = (mask * dy * dy).sum(dim=(-2, -1)) / safe
    mxy = (mask * dx * dy).sum(dim=(-2, -1)) / safe
    angle = 0.5 * torch.atan2(2 * mxy, mxx - myy)
    spread = torch.sqrt(((mxx - myy) / 2) ** 2 + mxy ** 2)
    major, minor = (mxx + myy) / 2 + spread, ((mxx + myy) / 2 - spread).clamp(min=1e-9)
    ratio = area / nominal_area
    compact = torch.sqrt(mxx + myy) <= MAX_SPREAD * nominal_radius * ratio.clamp(min=1).sqrt()
    found = (ratio >= AREA_RANGE[0]) & (ratio <= AREA_RANGE[1]) & compact
    nan = torch.tensor(float("nan"), dtype=torch.float64)
    return Track(found=found, centre=torch.where(found[:, None], torch.stack([cx, cy], -1), nan),
                 angle=torch.where(found, angle, nan), scale=torch.where(found, ratio.sqrt(), nan),
                 area=area, elongation=torch.sqrt(major / minor))


def wrap_half_turn(angle: Tensor) -> Tensor:
    """Angles modulo pi, into [-pi/2, pi/2)."""
    return (angle + math.pi / 2) % math.pi - math.pi / 2


@dataclass
class Motion:
    """Per-frame-pair motion ``[F-1]`` of a shape: displacement ``[F-1, 2]`` (px), spin (radians) and
    log-scale change."""

    displacement: Tensor
    spin: Tensor
    growth: Tensor

    @staticmethod
    def of_track(t: Track) -> "Motion":
        """Spin counts only between frames where the mask is elongated enough to have an orientation."""
        oriented = t.elongation >= MIN_ELONGATION
        spin = wrap_half_turn(t.angle[1:] - t.angle[:-1])
        spin = torch.where(oriented[1:] & oriented[:-1] | spin.isnan(), spin, torch.zeros_like(spin))
        return Motion(t.centre[1:] - t.centre[:-1], spin, torch.log(t.scale[1:] / t.scale[:-1]))

    @staticmethod
    def of_poses(centre: Tensor, angle: Tensor, scale: Tensor) -> "Motion":
        """From ground truth ``centre [F, 2]``, ``angle [F]``, ``scale [F]``."""
        centre, angle, scale = centre.double(), angle.double(), scale.double()
        return Motion(centre[1:] - centre[:-1], wrap_half_turn(angle[1:] - angle[:-1]), torch.log(scale[1:] / scale[:-1]))


def motion_error(measured: Motion, reference: Motion, radius: float) -> Tensor:
    """Per-frame-pair error ``[F-1]`` in px/frame (NaN where the shape was lost).

    How far the points of a shape's outline, ``radius`` px from its centre, move differently from the
    reference: centroid displacement error plus ``radius`` times the spin error and the log-scale error.
    """
    shift = (measured.displacement - reference.displacement).norm(dim=-1)
    return shift + radius * (measured.spin - reference.spin).abs() + radius * (measured.growth - reference.growth).abs()
