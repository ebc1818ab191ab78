"""GroupNorm statistics per frame or across frames, to match what AnimateDiff-Evolved (ADE) runs.

diffusers' motion module (``AnimateDiffTransformer3D``) normalises ``[B, C, F, H, W]``, i.e. with
statistics over all frames; ADE normalises each frame (``[(B F), C, H, W]``). For v1 models ADE instead
swaps every GroupNorm of the diffusion model, temporal and spatial, for one with statistics across the
frames of each video. :class:`FrameGroupNorm` does either, whatever layout it is called with, and keeps
the ``weight``/``bias`` names so state dicts and LoRA key names do not change.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .families import FrameMode, family_spec

_COUNTER_ATTR = "_sma_frame_counter"


@dataclass
class FrameCounter:
    """Frames per video of the current forward call, set by a pre-hook on the ``UNetMotionModel``."""

    frames: int | None = None


def group_norm_in_autocast_dtype(x: torch.Tensor, num_groups: int, weight: torch.Tensor | None,
                                 bias: torch.Tensor | None, eps: float) -> torch.Tensor:
    """``F.group_norm`` of ``x [N, C, ...]`` that runs in autocast's dtype when autocast is on for ``x``.

    CUDA's autocast runs GroupNorm in fp32: it keeps an fp32 copy of the input for backward and returns fp32,
    so the SiLU after it keeps fp32 too, 2.5 times the memory of the fp16 tensors around them in every
    resnet. The kernels accumulate the statistics in fp32 anyway, so this runs them on fp16/bf16 tensors, as
    inference does (ComfyUI runs fp16 weights without autocast) and as the CPU's autocast does. Without
    autocast (or for fp64) it is plain ``F.group_norm``.
    """
    device_type = x.device.type
    if x.dtype == torch.float64 or not torch.is_autocast_enabled(device_type):
        return F.group_norm(x, num_groups, weight, bias, eps)
    dtype = torch.get_autocast_dtype(device_type)
    with torch.autocast(device_type, enabled=False):
        return F.group_norm(x.to(dtype), num_groups, None if weight is None else weight.to(dtype),
                            None if bias is None else bias.to(dtype), eps)


class LeanGroupNorm(nn.GroupNorm):
    """``nn.GroupNorm`` that runs in autocast's dtype under autocast (:func:`group_norm_in_autocast_dtype`);
    same parameters and state-dict names. The trainer uses it for the spatial layers' GroupNorms."""

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        return group_norm_in_autocast_dtype(x, self.num_groups, self.weight, self.bias, self.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._norm(x)


def use_lean_group_norms(model: nn.Module) -> nn.Module:
    """Make every plain ``nn.GroupNorm`` of ``model`` a :class:`LeanGroupNorm` (in place, idempotent; returns
    ``model``). Outputs are unchanged without autocast; under autocast they come in its dtype."""
    for name, module in list(model.named_modules()):
        if type(module) is not nn.GroupNorm:
            continue
        new = LeanGroupNorm(module.num_groups, module.num_channels, module.eps, module.affine, device="meta")
        new.weight, new.bias = module.weight, module.bias
        new.train(module.training)
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, new)
    return model


class FrameGroupNorm(LeanGroupNorm):
    """GroupNorm with explicit frame handling (in autocast's dtype under autocast, as :class:`LeanGroupNorm`).

    Inputs: ``[B, C, F, H, W]`` (diffusers motion modules) or ``[(B F), C, H, W]`` (spatial layers);
    output has the input's shape. ``mode="per_frame"`` takes statistics over (C/G, H, W) of each frame;
    ``mode="across_frames"`` over (C/G, F, H, W) of each video, reading F for 4-D inputs from ``counter``.
    """

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True, *,
                 mode: FrameMode = "per_frame", counter: FrameCounter | None = None, device=None, dtype=None):
        super().__init__(num_groups, num_channels, eps, affine, device=device, dtype=dtype)
        self.mode: FrameMode = mode
        self.counter = counter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 5 and self.mode == "per_frame":
            b, c, f, h, w = x.shape
            frames = x.transpose(1, 2).reshape(b * f, c, h, w)
            return self._norm(frames).reshape(b, f, c, h, w).transpose(1, 2)
        if x.ndim == 4 and self.mode == "across_frames":
            f = self.counter.frames if self.counter is not None else None
            if f is None or x.shape[0] % f:
                raise RuntimeError(
                    f"across-frames GroupNorm needs the frame count of the call (got {f} for batch {x.shape[0]})."
                )
            bf, c, h, w = x.shape
            video = x.reshape(bf // f, f, c, h, w).transpose(1, 2)
            return self._norm(video).transpose(1, 2).reshape(bf, c, h, w)
        return self._norm(x)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mode={self.mode}"


def _record_frames(model: nn.Module, args: tuple, kwargs: dict) -> None:
    """Forward pre-hook: store F of ``sample`` [B, C, F, H, W] in the model's counter."""
    sample = kwargs.get("sample", args[0] if args else None)
    getattr(model, _COUNTER_ATTR).frames = int(sample.shape[2])


def _counter(model: nn.Module) -> FrameCounter:
    """The model's frame counter, installing the pre-hook that fills it from ``sample`` [B, C, F, H, W] once."""
    counter = getattr(model, _COUNTER_ATTR, None)
    if counter is None:
        counter = FrameCounter()

        setattr(model, _COUNTER_ATTR, counter)
        model.register_forward_pre_hook(_record_frames, with_kwargs=True)
    return counter


def _set_modes(model: nn.Module, mode: FrameMode, *, temporal: bool) -> nn.Module:
    """Give every GroupNorm inside (``temporal``) or outside (not ``temporal``) motion modules ``mode``."""
    counter = _counter(model) if mode == "across_frames" else getattr(model, _COUNTER_ATTR, None)
    for name, module in list(model.named_modules()):
        if not isinstance(module, nn.GroupNorm) or (".motion_modules." in f".{name}") != temporal:
            continue
        if isinstance(module, FrameGroupNorm):
            module.mode, module.counter = mode, counter
            continue
        if not temporal and mode == "per_frame":
            continue  # a plain GroupNorm on [(B F), C, H, W] already normalises each frame
        new = FrameGroupNorm(module.num_groups, module.num_channels, module.eps, module.affine,
                             mode=mode, counter=counter, device="meta")
        new.weight, new.bias = module.weight, module.bias
        new.train(module.training)
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, new)
    return model


def use_ade_group_norms(model: nn.Module, family: str) -> nn.Module:
    """Match ADE's GroupNorms for ``family`` (idempotent; in place; returns ``model``).

    The family's ``group_norms`` (:mod:`sma.models.families`) applies to every GroupNorm, temporal and
    spatial: v1 across the frames of each video (ADE's v1 patch); other families per frame (plain
    GroupNorm behaviour in the spatial layers).
    """
    mode = family_spec(family).group_norms
    _set_modes(model, mode, temporal=True)
    return _set_modes(model, mode, temporal=False)
