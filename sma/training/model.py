"""What the trainer needs to know about (and do to) the ``UNetMotionModel`` before training."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import SMAInputError
from ..lora import adapter_names
from ..models.families import DEFAULT_BASE, PE_KEY, bases, identify_family
from .memory import motion_modules

MOTION_ADAPTER = "motion"
SPATIAL_ADAPTER = "spatial"


def model_pe_length(unet: nn.Module) -> int:
    """Positions of the motion modules' positional encodings (``pos_embed.pe`` [1, L, C])."""
    lengths = {int(buf.shape[1]) for name, buf in unet.named_buffers()
               if ".motion_modules." in f".{name}" and name.endswith("pos_embed.pe")}
    if len(lengths) == 1:
        return lengths.pop()
    configured = getattr(getattr(unet, "config", None), "motion_max_seq_length", None)
    if configured:
        return int(configured)
    raise SMAInputError("cannot tell the motion module's positional-encoding length from the model.")


def infer_family(unet: nn.Module, pe_length: int) -> str:
    """The family file detection gives such motion modules (SD1.5: mid block = v2, 32 positions = v3, else v1)."""
    has_mid = any(name.startswith("mid_block.") for name, _ in named_motion_modules(unet))
    return identify_family(len(unet.config.block_out_channels), has_mid, {PE_KEY: pe_length}, True).name


def named_motion_modules(unet: nn.Module) -> list[tuple[str, nn.Module]]:
    ids = {id(m) for m in motion_modules(unet)}
    return [(n, m) for n, m in unet.named_modules() if id(m) in ids]


def check_model(unet: nn.Module, info: Any) -> int:
    """The model's positional-encoding length; SMAInputError when the model is not a motion UNet, is not
    loaded, already has training adapters, or does not fit ``info`` (the motion module's facts)."""
    config = getattr(unet, "config", None)
    if config is None or not hasattr(config, "in_channels") or not motion_modules(unet):
        raise SMAInputError(f"training needs a diffusers UNetMotionModel with motion modules, "
                            f"got {type(unet).__name__} (build it with sma.models.build.build_motion_unet).")
    pe_length = model_pe_length(unet)
    if any(p.is_meta for p in unet.parameters()):
        raise SMAInputError("the model has weights on the 'meta' device (not loaded); load its weights first.")
    present = [a for a in (MOTION_ADAPTER, SPATIAL_ADAPTER) if a in adapter_names(unet)]
    if present:
        raise SMAInputError(f"the model already has LoRA adapter(s) {present}; train on a freshly built model.")
    if info is None:
        return pe_length
    if getattr(info, "base", DEFAULT_BASE) not in (names := [b.name for b in bases()]):
        raise SMAInputError(f"training supports {' or '.join(names)} motion modules; "
                            f"this one is for {info.base} ({info.family}).")
    if info.pe_length is not None and info.pe_length != pe_length:
        raise SMAInputError(f"the motion module ({info.family}) has {info.pe_length} positions but the model was "
                            f"built with {pe_length}: rebuild the model from this motion module.")
    has_mid = any(name.startswith("mid_block.") for name, _ in named_motion_modules(unet))
    if bool(info.has_mid_block) != has_mid:
        raise SMAInputError(f"the motion module ({info.family}) {'has' if info.has_mid_block else 'has no'} mid-block "
                            f"module but the model {'has' if has_mid else 'has none'}: rebuild the model from it.")
    return pe_length


def model_device(unet: nn.Module) -> torch.device:
    return next(unet.parameters()).device


def release_inference_tensors(model: nn.Module) -> int:
    """Replace parameters/buffers created under ``torch.inference_mode`` by normal copies (in place).

    Inference tensors cannot take part in autograd; a host that loads models under inference mode
    (ComfyUI) would otherwise make the first backward pass fail. Returns how many were replaced.
    """
    replaced = 0
    for module in model.modules():
        for name, param in list(module._parameters.items()):
            if param is not None and param.is_inference():
                module._parameters[name] = nn.Parameter(param.detach().clone(), requires_grad=param.requires_grad)
                replaced += 1
        for name, buffer in list(module._buffers.items()):
            if buffer is not None and buffer.is_inference():
                module._buffers[name] = buffer.clone()
                replaced += 1
    return replaced
