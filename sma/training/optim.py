"""Optimizer (AdamW or 8-bit AdamW) with one parameter group per LoRA, and the warm-up + decay schedule."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from ..errors import SMAInputError


def lr_factor(schedule: str, warmup_steps: int, total_steps: int, floor: float = 0.0) -> Callable[[int], float]:
    """Multiplier of the base learning rate for the update after ``step`` completed updates.

    Linear warm-up from ``1/(warmup+1)`` to 1 over ``warmup_steps`` updates, then constant or cosine
    decay to ``floor`` at ``total_steps``.
    """
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        if schedule == "constant":
            return 1.0
        span = max(1, total_steps - warmup_steps)
        progress = min(1.0, (step - warmup_steps) / span)
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return factor


def check_optimizer_available(name: str, device: torch.device) -> None:
    """SMAInputError unless optimizer ``name`` can run on ``device`` (8-bit AdamW: bitsandbytes + CUDA)."""
    if name == "adamw":
        return
    if name != "adamw8bit":
        raise SMAInputError(f"optimizer must be 'adamw' or 'adamw8bit', got {name!r}.")
    try:
        import bitsandbytes  # noqa: F401  (optional dependency)
    except ImportError as error:
        raise SMAInputError(
            "optimizer 'adamw8bit' needs the bitsandbytes package (pip install bitsandbytes), which is not "
            "installed; use optimizer 'adamw' instead."
        ) from error
    if device.type != "cuda":
        raise SMAInputError(f"optimizer 'adamw8bit' runs on CUDA only (training device: {device}); use 'adamw'.")


def make_optimizer(name: str, groups: list[dict], weight_decay: float, device: torch.device) -> torch.optim.Optimizer:
    """AdamW (or bitsandbytes' 8-bit AdamW) over parameter ``groups`` (each ``{"name", "params", "lr"}``)."""
    check_optimizer_available(name, device)
    if name == "adamw8bit":
        import bitsandbytes as bnb

        return bnb.optim.AdamW8bit(groups, weight_decay=weight_decay)
    # one fused kernel per step instead of a Python loop over ~600 LoRA tensors (10 % of a toy-model step on a CPU)
    fused = device.type in ("cuda", "cpu")
    return torch.optim.AdamW(groups, weight_decay=weight_decay, fused=fused or None)


def clip_group(params: list[nn.Parameter], max_norm: float) -> torch.Tensor:
    """Total gradient norm of ``params`` (0-d, before clipping; no device sync); clips to ``max_norm`` when > 0."""
    grads = [p for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    if max_norm > 0:
        return torch.nn.utils.clip_grad_norm_(grads, max_norm)
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in grads]))
