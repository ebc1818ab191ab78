"""What the trainer reports: per-step progress, callbacks and the final result (and re-exports
:class:`~sma.errors.TrainingDiverged`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import TrainingDiverged

__all__ = ["StepReport", "TrainCallbacks", "TrainResult", "TrainingDiverged"]


@dataclass
class StepReport:
    """What ``on_step`` gets after each optimizer step (``step`` is 1-based)."""

    step: int
    total: int
    losses: dict[str, float]
    learning_rates: dict[str, float]
    grad_norms: dict[str, float]
    seconds: float
    sma_gradient_share: float | None = None
    """On measuring steps (``gradient_share_every``): |grad of the SMA terms| / |grad of the rest| on the motion
    LoRA (:mod:`sma.training.gradient_share`); else None."""


@dataclass
class TrainCallbacks:
    """Optional hooks: progress, previews and validation samples ``[F, 3, h, w]`` in 0..1 (latent resolution),
    cancellation."""

    on_step: Callable[[StepReport], None] | None = None
    on_preview: Callable[[int, torch.Tensor], None] | None = None
    should_stop: Callable[[], bool] | None = None
    on_validation: Callable[[int, torch.Tensor], None] | None = None


@dataclass
class TrainResult:
    """Outcome of :meth:`Trainer.run`.

    Attributes:
        lora_state: the motion LoRA in ADE format (fp16, CPU), ready for ``sma.lora.save_motion_lora``.
        metadata: training facts for the file's metadata (family, frames, size, SMA settings, steps...).
        losses: one dict of loss components per step done (resumed runs include the earlier steps).
        last_preview: the last preview ``[F, 3, h, w]`` or None.
        stopped_early: ``should_stop`` ended training before ``config.schedule.steps``.
        step: optimizer steps done.
        spatial_state: with ``keep_spatial``: ``{spatial layer (diffusers name): {"down", "up"}}`` with
            ``alpha / rank`` baked into ``up`` (fp16); not loadable by ADE.
        checkpoint: path of the last checkpoint written, or None.
        last_validation: the last validation sample ``[F, 3, h, w]`` or None.
        gradient_shares: ``{step: SMA gradient share}`` of the measuring steps of this run.
    """

    lora_state: dict[str, torch.Tensor]
    metadata: dict[str, Any]
    losses: list[dict[str, float]]
    last_preview: torch.Tensor | None
    stopped_early: bool
    step: int
    spatial_state: dict[str, dict[str, torch.Tensor]] | None = None
    checkpoint: Path | None = None
    last_validation: torch.Tensor | None = None
    gradient_shares: dict[int, float] = field(default_factory=dict)
