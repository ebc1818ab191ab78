"""How much of the motion LoRA's training signal comes from SMA: the gradient share.

The SMA loss is added to the denoising (+ debiased) loss, so the logged loss values say little about how much
each steers the motion LoRA. The share that matters is of gradients, on the motion LoRA's parameters::

    share = |grad SMA| / |grad (denoising + debias)|

measured on one micro-batch: the SMA terms' gradient by one extra backward (``torch.autograd.grad``, which
leaves ``.grad`` alone), the whole temporal loss's from the gradient the ordinary backward leaves, the rest as
their difference. Training is unchanged, bit for bit; the cost is one backward of the SMA terms per measuring
step.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def sma_gradient(sma_total: torch.Tensor, params: Sequence[nn.Parameter]) -> list[torch.Tensor]:
    """The gradient of the SMA terms on ``params`` (graph kept for the ordinary backward; zeros where unused)."""
    grads = torch.autograd.grad(sma_total, list(params), retain_graph=True, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


def gradient_share(sma_grads: Sequence[torch.Tensor], total_grads: Sequence[torch.Tensor]) -> torch.Tensor:
    """``|g_sma| / |g_total - g_sma|`` (0-d, on the device) for matching per-parameter gradients."""
    sma_sq = sum((g.float() ** 2).sum() for g in sma_grads)
    rest_sq = sum(((t.float() - g.float()) ** 2).sum() for g, t in zip(sma_grads, total_grads))
    return torch.sqrt(sma_sq) / torch.sqrt(rest_sq).clamp(min=1e-30)
