"""Cheap latent -> RGB previews: a fixed linear map per latent pixel, no VAE.

Latents (already multiplied by the VAE scaling factor, SD1.5: 0.18215) map to rough RGB in [-1, 1] with
the base's ``latent_rgb_factors`` (:mod:`sma.models.families`; for SD1.5 the 4x3 matrix ComfyUI's
"latent2rgb" previewer uses, with no bias term). Good enough to watch a training run converge; use the
VAE for real frames.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .errors import SMAInputError
from .models.families import DEFAULT_BASE, SD15, base_spec

SD15_LATENT_RGB_FACTORS: tuple[tuple[float, float, float], ...] = SD15.latent_rgb_factors
"""Rows: latent channels 0..3; columns: the R, G, B weight of that channel."""

SD15_LATENT_RGB_BIAS: tuple[float, float, float] = SD15.latent_rgb_bias


def latents_to_rgb(latents: torch.Tensor, upscale: int = 1, base: str = DEFAULT_BASE) -> torch.Tensor:
    """Project scaled latents of ``base`` to RGB frames.

    Args:
        latents: ``[F, C, h, w]`` (or ``[C, h, w]``), VAE-scaled latents (SD1.5: C = 4), any float dtype/device.
        upscale: integer nearest-neighbour upscaling of the result (8 gives the pixel size of an SD1.5 video).
        base: the base whose ``latent_rgb_factors`` [C, 3] and bias are used.

    Returns:
        ``[F, 3, h*upscale, w*upscale]`` (or ``[3, ...]``) float32 in [0, 1], on the input's device.
    """
    spec = base_spec(base)
    channels = spec.latent_channels
    if latents.shape[-3] != channels:
        raise ValueError(f"latents_to_rgb expects {channels} latent channels ({spec.name}) at dim -3, "
                         f"got shape {tuple(latents.shape)}")
    if upscale < 1:
        raise ValueError(f"upscale must be >= 1, got {upscale}")
    single = latents.ndim == 3
    x = latents[None] if single else latents
    weight = torch.tensor(spec.latent_rgb_factors, dtype=torch.float32, device=x.device)  # [C, 3]
    bias = torch.tensor(spec.latent_rgb_bias, dtype=torch.float32, device=x.device)
    rgb = torch.einsum("fchw,cr->frhw", x.detach().float(), weight) + bias[None, :, None, None]
    rgb = ((rgb + 1.0) / 2.0).clamp(0.0, 1.0)
    if upscale > 1:
        rgb = F.interpolate(rgb, scale_factor=upscale, mode="nearest")
    return rgb[0] if single else rgb


# --- preview frames ``[F, 3, h, w]`` (0..1) to what the node and the command line show ---------------------

def upscale_frames(frames: torch.Tensor, upscale: int = 1) -> torch.Tensor:
    """``[F, 3, h, w]`` -> float32 ``[F, 3, h*upscale, w*upscale]`` in [0, 1] on the CPU (nearest upscaling)."""
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise SMAInputError(f"expected frames [F, 3, h, w], got {tuple(frames.shape)}.")
    x = frames.detach().float().cpu().clamp(0, 1)
    return x.repeat_interleave(upscale, dim=-2).repeat_interleave(upscale, dim=-1) if upscale > 1 else x


def frames_to_uint8(frames: torch.Tensor, upscale: int = 1) -> np.ndarray:
    """``[F, 3, h, w]`` floats in 0..1 -> ``uint8 [F, h*upscale, w*upscale, 3]`` (nearest upscaling)."""
    return (upscale_frames(frames, upscale) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def frames_to_image_batch(frames: torch.Tensor, upscale: int = 1) -> torch.Tensor:
    """``[F, 3, h, w]`` floats -> a ComfyUI IMAGE batch ``[F, h*upscale, w*upscale, 3]`` float32 in [0, 1]."""
    return upscale_frames(frames, upscale).permute(0, 2, 3, 1).contiguous()
