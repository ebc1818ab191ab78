"""SD1.5 components (UNet, VAE, CLIP text encoder) from a single-file checkpoint, offline.

Checkpoints come in the original LDM naming (``model.diffusion_model.input_blocks...``,
``first_stage_model.``, ``cond_stage_model.transformer.``), as ComfyUI UNet files without the
``model.diffusion_model.`` prefix, or as diffusers state dicts. diffusers' single-file converters do the
renaming with the shipped configs; models are built empty and filled with ``assign=True`` (no random init,
no second copy, no hub access).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from accelerate import init_empty_weights
from diffusers import AutoencoderKL
from diffusers.models.modeling_utils import no_init_weights
from diffusers.loaders.single_file_utils import (
    convert_ldm_clip_checkpoint,
    convert_ldm_unet_checkpoint,
    convert_ldm_vae_checkpoint,
)
from torch import nn

from ..errors import SMAInputError
from .config import load_config, unet_config
from .families import SD15
from .files import load_state_dict_file

LDM_UNET_PREFIX = "model.diffusion_model."
_LDM_UNET_STARTS = ("input_blocks.", "middle_block.", "output_blocks.", "time_embed.")
_CONTEXT_KEY = "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"
_CONV_IN_KEY = "input_blocks.0.0.weight"
_VAE_PREFIXES = ("first_stage_model.", "vae.")
_CLIP_PREFIX = "cond_stage_model.transformer."


@contextmanager
def empty_weights() -> Iterator[None]:
    """Build modules with parameters on the meta device and without running weight initialisers."""
    with init_empty_weights(), no_init_weights():
        yield


def _as_state_dict(source: str | os.PathLike | dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return source if isinstance(source, dict) else load_state_dict_file(source)


def _check_ldm_unet(ldm: dict[str, torch.Tensor], config: dict) -> None:
    """Refuse SDXL / SD2 / inpainting UNets before conversion, with the numbers that differ.

    ``ldm`` has no ``model.diffusion_model.`` prefix.
    """
    if any(k.startswith("label_emb.") for k in ldm):
        raise SMAInputError("the checkpoint is an SDXL UNet; AnimateDiff motion modules here need an SD1.5 checkpoint.")
    context = ldm.get(_CONTEXT_KEY)
    if context is not None and context.shape[1] != config["cross_attention_dim"]:
        kind = " (SD2.x)" if context.shape[1] == 1024 else ""
        raise SMAInputError(
            f"the checkpoint's cross-attention dim is {context.shape[1]}{kind}, SD1.5 has "
            f"{config['cross_attention_dim']}; use an SD1.5 checkpoint."
        )
    conv_in = ldm.get(_CONV_IN_KEY)
    if conv_in is not None and conv_in.shape[1] != config["in_channels"]:
        raise SMAInputError(
            f"the checkpoint's UNet takes {conv_in.shape[1]} input channels (an inpainting model?), "
            f"SD1.5 text-to-image has {config['in_channels']}."
        )


def unet_state_dict_to_diffusers(
    state_dict: dict[str, torch.Tensor], config: dict | None = None
) -> dict[str, torch.Tensor]:
    """UNet weights in diffusers naming from an LDM checkpoint, a ComfyUI UNet file or a diffusers dict.

    Other parts of a full checkpoint (VAE, text encoder) are ignored. Tensors are shared, not copied.

    Raises:
        SMAInputError: no UNet found, or an SDXL / SD2 / inpainting UNet.
    """
    config = config or unet_config("full", SD15.name)
    keys = list(state_dict)
    if any(k.startswith(LDM_UNET_PREFIX) for k in keys):
        ldm = {k[len(LDM_UNET_PREFIX):]: v for k, v in state_dict.items() if k.startswith(LDM_UNET_PREFIX)}
    elif any(k.startswith(_LDM_UNET_STARTS) for k in keys):
        ldm = {k: v for k, v in state_dict.items() if k.startswith(_LDM_UNET_STARTS + ("out.",))}
    elif "conv_in.weight" in state_dict and any(k.startswith("down_blocks.") for k in keys):
        return {k: v for k, v in state_dict.items() if ".motion_modules." not in k}
    else:
        raise SMAInputError(
            f"no Stable Diffusion UNet found in the checkpoint (keys such as {keys[:3]}); expected "
            "'model.diffusion_model.input_blocks...' (full checkpoint) or 'input_blocks...' (UNet file)."
        )
    _check_ldm_unet(ldm, config)
    return convert_ldm_unet_checkpoint({LDM_UNET_PREFIX + k: v for k, v in ldm.items()}, config)


def cast_floats(state_dict: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Floating-point tensors cast to ``dtype`` (no copy when already ``dtype``); integer buffers as they are."""
    return {k: v.to(dtype) if v.is_floating_point() else v for k, v in state_dict.items()}


def fill_empty_model(model: nn.Module, state_dict: dict[str, torch.Tensor], dtype: torch.dtype, what: str) -> nn.Module:
    """Load ``state_dict`` (cast to ``dtype``) into an empty-weights ``model`` with ``strict=True, assign=True``.

    Raises:
        SMAInputError: missing / unexpected keys or shape mismatches, with examples.
    """
    expected = set(model.state_dict())
    missing = sorted(expected - set(state_dict))
    unexpected = sorted(set(state_dict) - expected)
    if missing or unexpected:
        raise SMAInputError(
            f"the {what} weights do not fit the SD1.5 layout: {len(missing)} missing (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})."
        )
    try:
        model.load_state_dict(cast_floats(state_dict, dtype), strict=True, assign=True)
    except RuntimeError as error:
        raise SMAInputError(f"the {what} weights do not fit the SD1.5 layout: {error}") from error
    return model.eval()


def load_sd15_vae(
    checkpoint_path_or_state_dict: str | os.PathLike | dict[str, torch.Tensor], dtype: torch.dtype = torch.float32
) -> AutoencoderKL:
    """SD1.5 ``AutoencoderKL`` from a full checkpoint (``first_stage_model.`` keys), offline."""
    source = _as_state_dict(checkpoint_path_or_state_dict)
    ldm = {k: v for k, v in source.items() if k.startswith(_VAE_PREFIXES)}
    if not ldm:
        raise SMAInputError("the checkpoint has no VAE ('first_stage_model.' keys); load a full SD1.5 checkpoint.")
    config = load_config(SD15.vae)
    with empty_weights():
        model = AutoencoderKL.from_config(config)
    return fill_empty_model(model, convert_ldm_vae_checkpoint(ldm, config), dtype, "VAE")


def load_sd15_text_encoder(
    checkpoint_path_or_state_dict: str | os.PathLike | dict[str, torch.Tensor], dtype: torch.dtype = torch.float32
) -> nn.Module:
    """SD1.5 CLIP text encoder (transformers ``CLIPTextModel``) from a full checkpoint, offline."""
    from transformers import CLIPTextConfig, CLIPTextModel

    source = _as_state_dict(checkpoint_path_or_state_dict)
    ldm = {k: v for k, v in source.items() if k.startswith(_CLIP_PREFIX)}
    if not ldm:
        raise SMAInputError(
            f"the checkpoint has no CLIP text encoder ('{_CLIP_PREFIX}' keys); load a full SD1.5 checkpoint."
        )
    with empty_weights():
        model = CLIPTextModel(CLIPTextConfig(**load_config(SD15.text_encoder)))
    converted = convert_ldm_clip_checkpoint(ldm)
    if not hasattr(model, "text_model"):
        converted = {k.removeprefix("text_model."): v for k, v in converted.items()}
    # Old checkpoints store the constant position_ids buffer; the model keeps its own (not in its state dict).
    expected = set(model.state_dict())
    converted = {k: v for k, v in converted.items() if k in expected or not k.endswith("position_ids")}
    return fill_empty_model(model, converted, dtype, "text encoder")
