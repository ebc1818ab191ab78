"""Memory and precision plumbing for training a ``UNetMotionModel``.

- diffusers' ``enable_gradient_checkpointing`` covers resnets, spatial transformers and the mid-block
  motion module, not the down/up motion modules; :func:`enable_full_gradient_checkpointing` wraps those.
- :func:`motion_modules_bypassed` runs the UNet as a plain image model (motion modules return their
  input), for MotionDirector's single-frame spatial step.

Both work by giving a motion module an instance-level ``forward`` and removing it again, so parameter
names (and LoRA key names) never change.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..validation import check_choice

_ORIGINAL = "_sma_forward_before_checkpointing"


def motion_modules(unet: nn.Module, *, include_mid: bool = True) -> list[nn.Module]:
    """The motion modules (``AnimateDiffTransformer3D``) of a ``UNetMotionModel``, in module order."""
    found = []
    for name, module in unet.named_modules():
        parent, _, index = name.rpartition(".")
        if parent.endswith("motion_modules") and index.isdigit():
            if include_mid or not name.startswith("mid_block."):
                found.append(module)
    return found


def _checkpointed(forward: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    def run(hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if torch.is_grad_enabled():
            return checkpoint(forward, hidden_states, *args, use_reentrant=False, **kwargs)
        return forward(hidden_states, *args, **kwargs)
    return run


def enable_full_gradient_checkpointing(unet: nn.Module) -> None:
    """Gradient checkpointing for the whole UNet, down/up motion modules included (idempotent)."""
    unet.enable_gradient_checkpointing()
    for module in motion_modules(unet, include_mid=False):  # the mid block checkpoints its own module
        if _ORIGINAL not in module.__dict__:
            module.__dict__[_ORIGINAL] = module.__dict__.get("forward")
            module.forward = _checkpointed(module.forward)


def disable_full_gradient_checkpointing(unet: nn.Module) -> None:
    """Undo :func:`enable_full_gradient_checkpointing`."""
    if getattr(unet, "is_gradient_checkpointing", False):
        unet.disable_gradient_checkpointing()
    for module in motion_modules(unet, include_mid=False):
        if _ORIGINAL in module.__dict__:
            previous = module.__dict__.pop(_ORIGINAL)
            if previous is None:
                del module.forward
            else:
                module.forward = previous


def _identity(hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    return hidden_states


@contextlib.contextmanager
def motion_modules_bypassed(unet: nn.Module) -> Iterator[nn.Module]:
    """Context in which every motion module returns its input unchanged (the UNet is an image model)."""
    saved = [(m, m.__dict__.get("forward")) for m in motion_modules(unet)]
    try:
        for module, _ in saved:
            module.forward = _identity
        yield unet
    finally:
        for module, previous in saved:
            if previous is None:
                del module.forward
            else:
                module.forward = previous


def set_attention_slicing(unet: nn.Module, slice_size: int) -> None:
    """Compute attention in chunks of ``slice_size`` (batch*heads) rows (0: torch's SDPA, unsliced)."""
    from diffusers.models.attention_processor import AttnProcessor2_0, SlicedAttnProcessor

    unet.set_attn_processor(SlicedAttnProcessor(slice_size) if slice_size else AttnProcessor2_0())


@dataclass(frozen=True)
class Precision:
    """How the forward pass runs: frozen-weight dtype, autocast and loss scaling."""

    name: str
    weight_dtype: torch.dtype
    device_type: str

    @property
    def autocast(self) -> bool:
        return self.weight_dtype != torch.float32

    @property
    def uses_grad_scaler(self) -> bool:
        return self.weight_dtype == torch.float16

    def autocast_context(self) -> contextlib.AbstractContextManager:
        return torch.autocast(self.device_type, dtype=self.weight_dtype, enabled=self.autocast)

    def grad_scaler(self) -> torch.amp.GradScaler:
        return torch.amp.GradScaler(self.device_type, enabled=self.uses_grad_scaler)


_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_precision(name: str, device: torch.device) -> Precision:
    """``auto``: fp32 on CPU; on CUDA bf16 where supported, else fp16 (with a GradScaler)."""
    if name == "auto":
        if device.type != "cuda":
            name = "fp32"
        else:
            name = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    check_choice("precision", name, ("auto", *_DTYPES))  # "auto" was resolved above
    return Precision(name, _DTYPES[name], device.type)


def free_memory(device: torch.device) -> None:
    """Collect garbage and release cached allocator blocks on CUDA (after a model or tensors were dropped)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
