"""The whole training job, for the node and the command line: encode -> build -> train -> save.

Where the models and clips come from is a :class:`TrainingSource` (ComfyUI's loaded models, or the
files the CLI reads); how progress is shown and a stop is asked for are the caller's callbacks (or its
own ``runner``). One large model is in memory at a time: the source encodes the clips and drops its
encoders before the UNet is built.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from ..atomic import check_writable
from ..lora import save_motion_lora
from ..models.build import make_noise_scheduler
from .config import TrainConfig
from .data import TrainingClip
from .memory import free_memory, resolve_precision
from .reports import TrainCallbacks, TrainResult
from .samples import ValidationPrompt
from .trainer import Trainer

PARTIAL_SUFFIX = "_partial"


class TrainingSource(Protocol):
    """Where a run's clips and model come from; asked once each, clips first."""

    def training_clips(self, device: torch.device) -> list[TrainingClip]:
        """The reference clips as latents ``[F, C, h, w]`` + text embeddings ``[1, T, D]`` (encoders freed after)."""

    def motion_unet(self, dtype: torch.dtype) -> nn.Module:
        """The ``UNetMotionModel`` to train, in ``dtype``; the source may drop its weights afterwards."""

    # Optional: ``validation_prompt() -> ValidationPrompt | None``, asked after ``training_clips``, for a source
    # that encodes the validation samples' prompt with the clips' (used when ``validation`` is not given).


@dataclass
class TrainOutcome:
    """A finished, cancelled or interrupted run: the trainer's result, where the LoRA was saved, and
    whether a hard interrupt ended it (its LoRA then goes to :func:`partial_path`)."""

    result: TrainResult
    path: Path
    interrupted: bool = False


Runner = Callable[[Trainer, "str | Path | None"], tuple[TrainResult, bool]]
"""Runs the trainer (with the caller's progress and stop handling); returns (result, interrupted)."""


def partial_path(path: Path) -> Path:
    """Where an interrupted run's LoRA goes: ``<stem>_partial.safetensors`` beside ``path``."""
    return path.with_name(f"{path.stem}{PARTIAL_SUFFIX}{path.suffix}")


def train_motion_lora(source: TrainingSource, config: TrainConfig, out: str | Path, *,
                      device: torch.device | str = "cpu", motion_info: Any = None,
                      resume_from: str | Path | None = None, callbacks: TrainCallbacks | None = None,
                      metadata: dict[str, Any] | None = None, runner: Runner | None = None,
                      validation: ValidationPrompt | None = None) -> TrainOutcome:
    """Encode the clips, build the model, train, and save the motion LoRA atomically to ``out``.

    Args:
        source: the clips and the model (see :class:`TrainingSource`).
        config: the run's settings (checked before anything is encoded).
        out: the ``.safetensors`` file to write (``partial_path(out)`` when the runner reports a hard
            interrupt).
        device: where to encode and train.
        motion_info: the motion module's ``MotionModuleInfo`` (default: inferred from the model).
        resume_from: a checkpoint file or folder to continue from.
        callbacks: progress / preview / stop hooks (ignored when ``runner`` is given).
        metadata: extra entries for the file's metadata (e.g. the source files' names).
        runner: runs the trainer instead of ``trainer.run(callbacks, resume_from)``.
        validation: the prompt of validation samples (needed when ``config.validation_every`` > 0).

    Raises:
        SMAInputError: bad clips, settings or checkpoint, or an output folder that cannot be written.
            TrainingDiverged: NaN/inf during training.
    """
    device = torch.device(device)
    weight_dtype = resolve_precision(config.precision, device).weight_dtype  # refused before any work if unusable
    check_writable(Path(out).parent)  # a read-only or full folder fails now, not after the training
    clips = source.training_clips(device)
    if validation is None and hasattr(source, "validation_prompt"):
        validation = source.validation_prompt()
    free_memory(device)
    result, interrupted = _train(source, clips, config, device, weight_dtype, motion_info, resume_from, callbacks,
                                 runner, validation)
    free_memory(device)  # the model and the trainer are gone now
    path = partial_path(Path(out)) if interrupted else Path(out)
    save_motion_lora(path, result.lora_state, {**result.metadata, **(metadata or {})})
    return TrainOutcome(result, path, interrupted)


def _train(source: TrainingSource, clips: list[TrainingClip], config: TrainConfig, device: torch.device,
           weight_dtype: torch.dtype, motion_info: Any, resume_from: str | Path | None,
           callbacks: TrainCallbacks | None, runner: Runner | None,
           validation: ValidationPrompt | None = None) -> tuple[TrainResult, bool]:
    """Build the model in ``weight_dtype`` and run the trainer; the model is dropped on return."""
    unet = source.motion_unet(weight_dtype)
    free_memory(device)
    trainer = Trainer(unet, clips, make_noise_scheduler(), config, motion_info=motion_info, device=device,
                      validation=validation)
    if runner is not None:
        return runner(trainer, resume_from)
    return trainer.run(callbacks, resume_from=resume_from), False
