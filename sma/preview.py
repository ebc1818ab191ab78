"""Cheap latent -> RGB previews: a fixed linear map per latent pixel, no VAE.

SD1.5 latents (already multiplied by the VAE scaling factor 0.18215) map to rough RGB in [-1, 1] with a
known 4x3 matrix (the factors ComfyUI's "latent2rgb" previewer uses for SD1.5; SD1.5 has no bias term).
Good enough to watch a training run converge; use the VAE for real frames.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .errors import SMAInputError

SD15_LATENT_RGB_FACTORS: tuple[tuple[float, float, float], ...] = (
    #   R        G        B
    (0.3512, 0.2297, 0.3227),
    (0.3250, 0.4974, 0.2350),
    (-0.2829, 0.1762, 0.2721),
    (-0.2120, -0.2616, -0.7177),
)
"""Rows: latent channels 0..3; columns: the R, G, B weight of that channel."""

SD15_LATENT_RGB_BIAS: tuple[float, float, float] = (0.0, 0.0, 0.0)


def latents_to_rgb(latents: torch.Tensor, upscale: int = 1) -> torch.Tensor:
    """Project scaled SD1.5 latents to RGB frames.

    Args:
        latents: ``[F, 4, h, w]`` (or ``[4, h, w]``), VAE-scaled latents, any float dtype/device.
        upscale: integer nearest-neighbour upscaling of the result (8 gives the pixel size of the video).

    Returns:
        ``[F, 3, h*upscale, w*upscale]`` (or ``[3, ...]``) float32 in [0, 1], on the input's device.
    """
    if latents.shape[-3] != 4:
        raise ValueError(f"latents_to_rgb expects 4 latent channels at dim -3, got shape {tuple(latents.shape)}")
    if upscale < 1:
        raise ValueError(f"upscale must be >= 1, got {upscale}")
    single = latents.ndim == 3
    x = latents[None] if single else latents
    weight = torch.tensor(SD15_LATENT_RGB_FACTORS, dtype=torch.float32, device=x.device)  # [4, 3]
    bias = torch.tensor(SD15_LATENT_RGB_BIAS, dtype=torch.float32, device=x.device)
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
