"""What the trainer's loop does after a step besides learning, as hooks: previews, checkpoints, validation samples.

The loop asks each :class:`StepHook` whether the step must return the model's estimate of the clean clip
(``z0_hat``, a preview needs it), calls :meth:`StepHook.after_step` after every optimizer step and
:meth:`StepHook.at_end` once when the loop ends (finished or stopped). :meth:`sma.training.Trainer.run` builds the
three below from the config and the callbacks, in this order, and runs any extra hooks it is given after them.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..preview import latents_to_rgb
from .checkpoint import checkpoint_path
from .samples import ValidationSampler

if TYPE_CHECKING:
    from .trainer import Trainer

History = list[dict[str, float]]
"""The loss parts of every step so far (resumed steps included)."""


class StepHook:
    """A hook on the trainer's loop; each method does nothing unless overridden."""

    def wants_estimate(self, step: int) -> bool:
        """Whether step ``step`` (1-based) must give :meth:`after_step` its ``z0_hat``."""
        return False

    def after_step(self, trainer: Trainer, step: int, history: History, estimate: torch.Tensor | None) -> None:
        """After optimizer step ``step``; ``estimate``: the last micro-batch's ``z0_hat[0]`` ``[F, C, h, w]`` when
        some hook wanted it for this step, else None."""

    def at_end(self, trainer: Trainer, step: int, history: History, stopped: bool) -> None:
        """Once, after the last step (``stopped``: a stop request ended the loop early)."""


class PreviewHook(StepHook):
    """Every ``every`` steps (0 = never): the estimate as RGB frames ``[F, 3, h, w]`` (latent resolution, the
    base's latent colours), kept as :attr:`last` and passed to ``on_preview(step, frames)``."""

    def __init__(self, every: int, base: str, on_preview: Callable[[int, torch.Tensor], None] | None) -> None:
        self.every, self.base, self.on_preview = every, base, on_preview
        self.last: torch.Tensor | None = None

    def wants_estimate(self, step: int) -> bool:
        return self.every > 0 and step % self.every == 0

    def after_step(self, trainer: Trainer, step: int, history: History, estimate: torch.Tensor | None) -> None:
        if estimate is None or not self.wants_estimate(step):
            return
        self.last = latents_to_rgb(estimate, base=self.base).cpu()
        if self.on_preview is not None:
            self.on_preview(step, self.last)


class CheckpointHook(StepHook):
    """A resumable checkpoint into ``folder`` every ``every`` steps (0 = none on the way), and one at the step a
    stop request ended the run on (if that step has none yet), so that a cancelled run can be resumed."""

    def __init__(self, every: int, folder: str | Path | None) -> None:
        self.every, self.folder = every, folder

    def after_step(self, trainer: Trainer, step: int, history: History, estimate: torch.Tensor | None) -> None:
        if self.every and step % self.every == 0:
            trainer.save_checkpoint(step, history)

    def at_end(self, trainer: Trainer, step: int, history: History, stopped: bool) -> None:
        if stopped and self.folder and trainer.last_checkpoint != checkpoint_path(self.folder, step):
            trainer.save_checkpoint(step, history)


class ValidationHook(StepHook):
    """The sampler's validation sample when it is due, kept as :attr:`last` and passed to
    ``on_validation(step, frames)``."""

    def __init__(self, sampler: ValidationSampler,
                 on_validation: Callable[[int, torch.Tensor], None] | None) -> None:
        self.sampler, self.on_validation = sampler, on_validation
        self.last: torch.Tensor | None = None

    def after_step(self, trainer: Trainer, step: int, history: History, estimate: torch.Tensor | None) -> None:
        if not self.sampler.due(step):
            return
        self.last = self.sampler(trainer.unet, step)
        if self.on_validation is not None:
            self.on_validation(step, self.last)
