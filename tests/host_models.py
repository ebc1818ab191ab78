"""Random-weight, full-size Stable Diffusion 1.5 checkpoint for host tests (original LDM key naming).

The names and shapes come from ComfyUI's own model classes, built on the ``meta`` device (no memory,
no init), so ComfyUI's checkpoint detection sees exactly what a real SD1.5 single file holds:
``model.diffusion_model.*`` (UNet), ``first_stage_model.*`` (VAE) and
``cond_stage_model.transformer.text_model.*`` (CLIP-L text encoder). Only importable inside the host
(``comfy`` must be on ``sys.path``, which the ``comfy_host`` fixture arranges).
"""
from __future__ import annotations

import json
import math
import zlib
from pathlib import Path

import torch

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer."

# ComfyUI ``UNetModel`` keyword arguments of SD1.5 (what ``comfy.model_detection.detect_unet_config``
# reads back from a real SD1.5 checkpoint, minus ``dtype``).
SD15_UNET_CONFIG: dict = {
    "use_checkpoint": False, "image_size": 32, "in_channels": 4, "out_channels": 4,
    "model_channels": 320, "num_res_blocks": [2, 2, 2, 2], "channel_mult": [1, 2, 4, 4],
    "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0], "transformer_depth_middle": 1,
    "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
    "use_spatial_transformer": True, "use_linear_in_transformer": False, "legacy": False,
    "context_dim": 768, "num_heads": 8, "adm_in_channels": None,
    "use_temporal_attention": False, "use_temporal_resblock": False,
}

# The SD1.x KL-f8 autoencoder (``ddconfig`` of ``AutoencoderKL``), latent channels 4.
SD15_VAE_DDCONFIG: dict = {
    "double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
    "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0,
}
SD15_VAE_EMBED_DIM = 4
CLIP_MAX_POSITIONS = 77
EMBEDDING_STD = 0.02


def _shapes(module: torch.nn.Module, prefix: str) -> dict[str, torch.Size]:
    return {prefix + name: t.shape for name, t in module.state_dict().items()}


def sd15_unet_shapes() -> dict[str, torch.Size]:
    """Names (with ``model.diffusion_model.``) and shapes of the SD1.5 UNet."""
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    with torch.device("meta"):
        unet = UNetModel(**SD15_UNET_CONFIG, device="meta")
    return _shapes(unet, UNET_PREFIX)


def sd15_vae_shapes() -> dict[str, torch.Size]:
    """Names (with ``first_stage_model.``) and shapes of the SD1.x KL-f8 VAE."""
    from comfy.ldm.models.autoencoder import AutoencoderKL

    with torch.device("meta"):
        vae = AutoencoderKL(ddconfig=dict(SD15_VAE_DDCONFIG), embed_dim=SD15_VAE_EMBED_DIM)
    return _shapes(vae, VAE_PREFIX)


def sd15_clip_shapes() -> dict[str, torch.Size]:
    """Names (with ``cond_stage_model.transformer.``) and shapes of the CLIP-L text model.

    Only ``text_model.*``: an SD1.5 checkpoint has no ``text_projection`` or ``logit_scale``.
    """
    import comfy.clip_model
    import comfy.ops
    import comfy.sd1_clip

    config = json.loads((Path(comfy.sd1_clip.__file__).parent / "sd1_clip_config.json").read_text())
    with torch.device("meta"):
        clip = comfy.clip_model.CLIPTextModel(config, torch.float32, "meta", comfy.ops.disable_weight_init)
    return _shapes(clip.text_model, CLIP_PREFIX + "text_model.")


def _is_norm_or_bias(name: str, shape: torch.Size) -> bool:
    return name.endswith(".bias") or (name.endswith(".weight") and len(shape) == 1)


def random_tensor(name: str, shape: torch.Size, dtype: torch.dtype, seed: int) -> torch.Tensor:
    """One seeded random tensor whose scale keeps activations O(1).

    1-D ``*.weight`` (norm scales) = 1, biases = 0, embeddings ~ N(0, 0.02), every other weight
    ~ N(0, 1/fan_in) with ``fan_in = prod(shape[1:])``. The values depend only on ``(name, seed)``.
    """
    if _is_norm_or_bias(name, shape):
        return (torch.ones if name.endswith(".weight") else torch.zeros)(shape, dtype=dtype)
    generator = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
    std = EMBEDDING_STD if "embedding" in name else 1.0 / math.sqrt(math.prod(shape[1:]))
    return torch.randn(shape, generator=generator, dtype=torch.float32).mul_(std).to(dtype)


def sd15_checkpoint_shapes() -> dict[str, torch.Size]:
    """Every float tensor of an SD1.5 single-file checkpoint: UNet, VAE and text encoder."""
    return {**sd15_unet_shapes(), **sd15_vae_shapes(), **sd15_clip_shapes()}


def sd15_checkpoint_state_dict(dtype: torch.dtype = torch.float16, seed: int = 0) -> dict[str, torch.Tensor]:
    """A full-size random-weight SD1.5 checkpoint (~1.07 G parameters; 2.1 GB in fp16).

    Plus ``...embeddings.position_ids`` (int64 ``[1, 77]``), as the original release stores it.
    """
    state = {name: random_tensor(name, shape, dtype, seed) for name, shape in sd15_checkpoint_shapes().items()}
    state[CLIP_PREFIX + "text_model.embeddings.position_ids"] = torch.arange(CLIP_MAX_POSITIONS)[None]
    return state
