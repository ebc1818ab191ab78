"""Appearance augmentation: recoloured copies of a reference clip that keep its motion exactly.

A motion LoRA trained on one clip can learn the clip's look along with its motion. Showing it the same
motion in other colours takes the look away as a cue: each copy gets one random colour transform, the
same for every frame (so frame differences, the motion, change only by that transform):

- hue rotation (the chroma plane of YIQ turned by an angle),
- saturation (chroma scaled),
- contrast and brightness (around the clip's mean luminance),
- grey level (a blend towards the luminance).

Frames are RGB ``[F, H, W, 3]`` in 0..1; the copies are encoded like the original (for SD1.5 before VAE
encoding, once each).
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .errors import SMAInputError

_RGB_TO_YIQ = torch.tensor([colorsys.rgb_to_yiq(*unit) for unit in torch.eye(3).tolist()]).T
"""The YIQ transform of Python's ``colorsys`` (its columns are the images of pure red, green and blue)."""

SATURATION_RANGE = (0.6, 1.4)
CONTRAST_RANGE = (0.8, 1.2)
BRIGHTNESS_RANGE = (-0.1, 0.1)
GREY_RANGE = (0.0, 0.3)
"""Ranges the random transforms are drawn from (uniformly); the hue angle is uniform on the whole circle."""


@dataclass(frozen=True)
class ColourTransform:
    """One colour transform: ``hue`` (radians), ``saturation`` and ``contrast`` (factors), ``brightness``
    (added), ``grey`` (0 = none, 1 = luminance only)."""

    hue: float = 0.0
    saturation: float = 1.0
    contrast: float = 1.0
    brightness: float = 0.0
    grey: float = 0.0

    def __call__(self, frames: Tensor) -> Tensor:
        """The transformed clip ``[F, H, W, 3]`` in 0..1 (same dtype and device)."""
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise SMAInputError(f"colour transforms take RGB frames [F, H, W, 3], got shape {tuple(frames.shape)}.")
        to_yiq = _RGB_TO_YIQ.to(frames.device, torch.float32)
        yiq = frames.float() @ to_yiq.T  # [F, H, W, 3]
        luma, chroma = yiq[..., :1], yiq[..., 1:]
        c, s = math.cos(self.hue), math.sin(self.hue)
        turn = torch.tensor([[c, -s], [s, c]], device=frames.device)
        chroma = chroma @ turn.T * (self.saturation * (1.0 - self.grey))
        mean = luma.mean()
        luma = (luma - mean) * self.contrast + mean + self.brightness
        rgb = torch.cat([luma, chroma], dim=-1) @ torch.linalg.inv(to_yiq).T
        return rgb.clamp(0, 1).to(frames.dtype)


def random_transforms(count: int, seed: int) -> list[ColourTransform]:
    """``count`` random transforms drawn from ``seed`` (the ranges above)."""
    g = torch.Generator().manual_seed(seed)

    def uniform(low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand((), generator=g))

    return [ColourTransform(hue=uniform(-math.pi, math.pi), saturation=uniform(*SATURATION_RANGE),
                            contrast=uniform(*CONTRAST_RANGE), brightness=uniform(*BRIGHTNESS_RANGE),
                            grey=uniform(*GREY_RANGE)) for _ in range(count)]


def colour_variants(frames: Tensor, count: int, seed: int) -> list[Tensor]:
    """``count`` recoloured copies ``[F, H, W, 3]`` of ``frames`` (the original not included)."""
    return [transform(frames) for transform in random_transforms(count, seed)]


def with_recoloured_copies(clips: list[Tensor], count: int, seed: int) -> list[tuple[Tensor, int, int]]:
    """Each clip's frames followed by ``count`` recoloured copies: ``(frames, clip index, copy number)`` with copy
    number 0 for the original (the copies of clip ``i`` use seed ``seed * 1000 + i``)."""
    out = []
    for i, frames in enumerate(clips):
        out.append((frames, i, 0))
        out.extend((copy, i, k) for k, copy in enumerate(colour_variants(frames, count, seed * 1000 + i), start=1))
    return out
