"""The whole training job, for the node and the command line: encode -> build -> train -> save.

Where the models and clips come from is a :class:`TrainingSource` (ComfyUI's loaded models, the files the CLI
reads, the toy base); how progress is shown and a stop is asked for are the caller's callbacks. However a run
ends, it ends here, as one :class:`TrainOutcome`: finished, stopped on request, or broken off by a
``KeyboardInterrupt`` after a step (the LoRA as of that step goes to :func:`partial_path`). One large model is in
memory at a time: the source encodes the clips and drops its encoders before the UNet is built.
"""

from __future__ import annotations

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

    def training_clips(self, device: torch.device, appearance_augment: int = 0, seed: int = 0) -> list[TrainingClip]:
        """The reference clips as latents ``[F, C, h, w]`` + text embeddings ``[1, T, D]`` (encoders freed after),
        each followed by ``appearance_augment`` motion-only recoloured copies (:func:`sma.augment.colour_variants`
        of its frames with seed ``seed``, encoded the same way, with the clip's prompt)."""

    def motion_unet(self, dtype: torch.dtype) -> nn.Module:
        """The ``UNetMotionModel`` to train, in ``dtype``; the source may drop its weights afterwards."""

    # Optional: ``validation_prompt() -> ValidationPrompt | None``, asked after ``training_clips``, for a source
    # that encodes the validation samples' prompt with the clips' (used when ``validation`` is not given); and
    # ``noise_scheduler() -> DDPMScheduler`` for a model trained with another schedule than AnimateDiff's.


@dataclass
class TrainOutcome:
    """How a run ended: the trainer's result, where the LoRA was saved, and whether the run was interrupted (a
    ``KeyboardInterrupt`` after a step, or a stop request the caller counts as one); an interrupted run's LoRA
    is at :func:`partial_path` of the asked-for file."""

    result: TrainResult
    path: Path
    interrupted: bool = False


def partial_path(path: Path) -> Path:
    """Where an interrupted run's LoRA goes: ``<stem>_partial.safetensors`` beside ``path``."""
    return path.with_name(f"{path.stem}{PARTIAL_SUFFIX}{path.suffix}")


def train_motion_lora(source: TrainingSource, config: TrainConfig, out: str | Path, *,
                      device: torch.device | str = "cpu", motion_info: Any = None,
                      resume_from: str | Path | None = None, callbacks: TrainCallbacks | None = None,
                      metadata: dict[str, Any] | None = None, validation: ValidationPrompt | None = None,
                      stop_is_interruption: bool = False) -> TrainOutcome:
    """Encode the clips, build the model, train, and save the motion LoRA atomically to ``out``.

    Args:
        source: the clips and the model (see :class:`TrainingSource`).
        config: the run's settings (checked before anything is encoded).
        out: the ``.safetensors`` file to write (``partial_path(out)`` when the run is interrupted).
        device: where to encode and train.
        motion_info: the motion module's ``MotionModuleInfo`` (default: inferred from the model).
        resume_from: a checkpoint file or folder to continue from.
        callbacks: progress / preview / stop hooks.
        metadata: extra entries for the file's metadata (e.g. the source files' names).
        validation: the prompt of validation samples (needed when ``config.validation.validation_every`` > 0).
        stop_is_interruption: a run that ``callbacks.should_stop`` ended early counts as interrupted (the
            command line's first Ctrl-C); otherwise it is saved to ``out`` (ComfyUI's Cancel).

    Raises:
        SMAInputError: bad clips, settings or checkpoint, or an output folder that cannot be written.
            TrainingDiverged: NaN/inf during training.
        KeyboardInterrupt: broken off before a training step finished (nothing to save).
    """
    device = torch.device(device)
    weight_dtype = resolve_precision(config.memory.precision, device).weight_dtype  # refused before any work if unusable
    check_writable(Path(out).parent)  # a read-only or full folder fails now, not after the training
    clips = source.training_clips(device, config.sampling.appearance_augment, config.sampling.seed)
    if validation is None and hasattr(source, "validation_prompt"):
        validation = source.validation_prompt()
    free_memory(device)
    result, interrupted = _train(source, clips, config, device, weight_dtype, motion_info, resume_from, callbacks,
                                 validation)
    interrupted = interrupted or (stop_is_interruption and result.stopped_early)
    free_memory(device)  # the model and the trainer are gone now
    path = partial_path(Path(out)) if interrupted else Path(out)
    save_motion_lora(path, result.lora_state, {**result.metadata, **(metadata or {})})
    return TrainOutcome(result, path, interrupted)


def _train(source: TrainingSource, clips: list[TrainingClip], config: TrainConfig, device: torch.device,
           weight_dtype: torch.dtype, motion_info: Any, resume_from: str | Path | None,
           callbacks: TrainCallbacks | None, validation: ValidationPrompt | None) -> tuple[TrainResult, bool]:
    """Build the model in ``weight_dtype`` and run the trainer; returns its result and whether a
    ``KeyboardInterrupt`` broke it off after a step. The model is dropped on return."""
    unet = source.motion_unet(weight_dtype)
    free_memory(device)
    scheduler = source.noise_scheduler() if hasattr(source, "noise_scheduler") else make_noise_scheduler()
    trainer = Trainer(unet, clips, scheduler, config, motion_info=motion_info, device=device, validation=validation)
    try:
        return trainer.run(callbacks, resume_from=resume_from), False
    except KeyboardInterrupt:
        so_far = trainer.result_so_far()
        if so_far is None:
            raise
        return so_far, True
