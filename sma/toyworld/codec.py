"""The toy world's stand-ins for a VAE and a text encoder.

- Latents: a fixed invertible linear map per pixel, no downsampling. ``x = 2 rgb - 1`` (0..1 -> -1..1,
  so a mid-grey frame is zero) is expressed in an orthonormal basis of opponent colours: channel 0
  luminance ``(r + g + b) / sqrt 3``, channel 1 red-green ``(r - g) / sqrt 2``, channel 2 yellow-blue
  ``(r + g - 2b) / sqrt 6``; channel 3 is always zero (the UNet takes 4 channels); then multiplied by
  :data:`LATENT_SCALE`. Decoding is the inverse.
- Why the scale: toy clips are mostly flat grey, so ``x`` has a standard deviation of only about 0.2.
  Under AnimateDiff's schedule the signal-to-noise ratio ``abar / (1 - abar) * std^2`` of such data
  reaches 1 only below t of about 15, so a 25-step DDIM sampler (t = 961, 921, ..., 1) would have one
  step left to draw everything, and samples stay noise (measured). Scaled to a standard deviation of
  about 0.8 (mean near 0, like SD latents), SNR 1 falls near t = 250 and samples form normally.
- Appearance embedding: ``encoder_hidden_states`` ``[B, TOKENS, 32]``, one token per shape slot and one
  for the background, each a few plain features (presence, hue as cos/sin, RGB, brightness, kind one-hot,
  size, aspect, stripes; background grey level) in fixed positions, zero elsewhere.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .world import KINDS, BASE_SIDE, Appearance

LATENT_CHANNELS = 4
LATENT_SCALE = 4.0
TOKENS = 3
_BASIS = torch.tensor([
    [1 / math.sqrt(3), 1 / math.sqrt(3), 1 / math.sqrt(3)],
    [1 / math.sqrt(2), -1 / math.sqrt(2), 0.0],
    [1 / math.sqrt(6), 1 / math.sqrt(6), -2 / math.sqrt(6)],
    [0.0, 0.0, 0.0],
])  # [4, 3]: rows orthonormal (the last is zero), so decode(encode(x)) == x


def encode(frames: Tensor) -> Tensor:
    """RGB ``[..., F, H, W, 3]`` in 0..1 -> latents ``[..., F, 4, H, W]``."""
    return LATENT_SCALE * torch.einsum("cr,...hwr->...chw", _BASIS.to(frames), 2 * frames - 1)


def decode(latents: Tensor) -> Tensor:
    """Latents ``[..., F, 4, H, W]`` -> RGB ``[..., F, H, W, 3]`` clamped to 0..1."""
    x = torch.einsum("cr,...chw->...hwr", _BASIS.to(latents), latents / LATENT_SCALE)
    return ((x + 1) / 2).clamp(0, 1)


def embed_appearance(appearance: Appearance, width: int = 32, side: int = BASE_SIDE) -> Tensor:
    """``encoder_hidden_states`` ``[B, TOKENS, width]`` (``width`` = the UNet's cross-attention dim, >= 16).

    ``side``: the frame side the sizes refer to (sizes are given relative to it, so one embedding
    means the same picture at any resolution).
    """
    if width < 16:
        raise ValueError(f"the appearance embedding needs at least 16 dimensions, got {width}.")
    app = appearance
    b = app.batch
    rgb = app.colours() * 2 - 1  # [B, P, 3]
    kind = torch.nn.functional.one_hot(app.kind, len(KINDS)).float()
    unit = side / BASE_SIDE
    shape_features = torch.cat([
        app.present[..., None], torch.cos(app.hue)[..., None], torch.sin(app.hue)[..., None], rgb,
        (app.value[..., None] - 0.9) * 5, kind, (app.size[..., None] / unit - 3.0), (app.aspect[..., None] - 1.75) * 4,
        app.striped[..., None] * 2 - 1,
    ], dim=-1) * app.present[..., None]  # [B, P, 13]
    tokens = torch.zeros(b, TOKENS, width, device=app.hue.device)
    tokens[:, :2, :shape_features.shape[-1]] = shape_features
    tokens[:, 2, 0] = 1.0
    tokens[:, 2, 1] = (app.grey - 0.5) * 5
    return tokens
