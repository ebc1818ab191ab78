"""``TrainConfig``: every setting of a motion-LoRA training run, validated on construction."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from ..errors import SMAInputError
from ..lora import LoRAConfig

SMA_MODES = ("paper", "plus", "off")
OPTIMIZERS = ("adamw", "adamw8bit")
LR_SCHEDULES = ("constant", "cosine")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")

RESUMABLE_CHANGES = frozenset({"steps", "checkpoint_every", "checkpoint_dir", "keep_checkpoints", "preview_every"})
"""Fields that may differ between a checkpoint's config and the config that resumes it."""


def _int_at_least(name: str, value: Any, low: int, hint: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise SMAInputError(f"{name} must be a whole number >= {low}{hint}, got {value!r}.")


def _positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise SMAInputError(f"{name} must be a finite number > 0, got {value!r}.")


def _non_negative(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise SMAInputError(f"{name} must be a finite number >= 0, got {value!r}.")


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise SMAInputError(f"{name} must be one of {', '.join(allowed)}; got {value!r}.")


@dataclass
class TrainConfig:
    """Settings of one training run (JSON-serialisable; stored in checkpoints).

    Steps count optimizer updates; each update sees ``clips_per_step * grad_accum`` windows.

    Attributes:
        steps: optimizer steps (>= 1).
        lr_temporal / lr_spatial: AdamW learning rates of the motion (temporal) and spatial LoRA.
        rank / alpha: LoRA rank and alpha of the motion LoRA (alpha None = rank, i.e. scale 1).
        spatial_rank: rank of the spatial LoRA (None = ``rank``; alpha = its rank).
        spatial_lora: train MotionDirector's spatial (appearance) LoRA beside the temporal one.
        spatial_skip_prob: probability that a step trains without the spatial path (MotionDirector: 0.2).
        keep_spatial: also return the spatial LoRA (it is never part of the ADE motion-LoRA file).
        lora_targets: motion LoRA layer groups ("attention", optionally "ff", "proj").
        sma_mode: "paper" (reference SMA), "plus" (fixed SMA) or "off" (MotionDirector only).
        lambda_global / lambda_local: weights of the SMA wavelet / Fourier terms.
        sma_levels: wavelet levels (None = the loss's default for the window length).
        debias_weight / debias_beta: weight and beta of MotionDirector's appearance-debiased loss.
        seed: seed of every random choice (clips, windows, timesteps, noise, anchors, LoRA init).
        timestep_min / timestep_max: inclusive range of training timesteps (0..num_train_timesteps-1).
        frames: training window length; None = the shortest clip, capped at the motion module's
            positional-encoding length (24 for v1, 32 for v2/v3).
        clips_per_step: clips (windows) per micro-batch; all clips then need equal latent sizes.
        grad_accum: micro-batches accumulated per optimizer step.
        max_grad_norm: gradient clipping per LoRA (0 = off).
        optimizer: "adamw" or "adamw8bit" (needs bitsandbytes and a CUDA device).
        weight_decay: AdamW weight decay.
        lr_schedule / warmup_steps: "constant" or "cosine" (to 0) after a linear warm-up.
        precision: "auto" (CUDA: bf16 if supported else fp16; CPU: fp32), "fp32", "fp16", "bf16";
            frozen weights in that dtype, LoRA weights fp32, autocast for the forward pass.
        gradient_checkpointing: checkpoint resnets, spatial transformers AND motion modules.
        attention_slice: slice attention into chunks of this many (batch*heads) rows (0 = off).
        checkpoint_every / checkpoint_dir / keep_checkpoints: resumable checkpoints every N steps
            (0 = only when stopped early, if a folder is given), newest ``keep_checkpoints`` kept.
        preview_every: call ``on_preview`` every N steps (0 = never).
    """

    steps: int = 400
    lr_temporal: float = 5e-4
    lr_spatial: float = 1e-4
    rank: int = 32
    alpha: float | None = None
    spatial_rank: int | None = None
    spatial_lora: bool = True
    spatial_skip_prob: float = 0.2
    keep_spatial: bool = False
    lora_targets: tuple[str, ...] = ("attention",)
    sma_mode: str = "plus"
    lambda_global: float = 0.4
    lambda_local: float = 0.2
    sma_levels: int | None = None
    debias_weight: float = 1.0
    debias_beta: float = 1.0
    seed: int = 0
    timestep_min: int = 0
    timestep_max: int = 999
    frames: int | None = None
    clips_per_step: int = 1
    grad_accum: int = 1
    max_grad_norm: float = 1.0
    optimizer: str = "adamw"
    weight_decay: float = 1e-2
    lr_schedule: str = "constant"
    warmup_steps: int = 0
    precision: str = "auto"
    gradient_checkpointing: bool = True
    attention_slice: int = 0
    checkpoint_every: int = 0
    checkpoint_dir: str | None = None
    keep_checkpoints: int = 2
    preview_every: int = 0

    def __post_init__(self) -> None:
        self.lora_targets = tuple(self.lora_targets)
        self.validate()

    def validate(self) -> None:
        """Raise :class:`SMAInputError` naming the first bad field and what is allowed."""
        _int_at_least("steps", self.steps, 1)
        _positive("lr_temporal", self.lr_temporal)
        _positive("lr_spatial", self.lr_spatial)
        _int_at_least("rank", self.rank, 1)
        if self.alpha is not None:
            _positive("alpha", self.alpha)
        if self.spatial_rank is not None:
            _int_at_least("spatial_rank", self.spatial_rank, 1)
        _non_negative("spatial_skip_prob", self.spatial_skip_prob)
        if not self.spatial_skip_prob < 1.0:
            raise SMAInputError(f"spatial_skip_prob must be in [0, 1), got {self.spatial_skip_prob!r}.")
        _choice("sma_mode", self.sma_mode, SMA_MODES)
        _non_negative("lambda_global", self.lambda_global)
        _non_negative("lambda_local", self.lambda_local)
        if self.sma_levels is not None:
            _int_at_least("sma_levels", self.sma_levels, 1)
        _non_negative("debias_weight", self.debias_weight)
        _non_negative("debias_beta", self.debias_beta)
        _int_at_least("seed", self.seed, 0)
        _int_at_least("timestep_min", self.timestep_min, 0)
        _int_at_least("timestep_max", self.timestep_max, 0)
        if self.timestep_max < self.timestep_min:
            raise SMAInputError(
                f"timestep_max ({self.timestep_max}) must be >= timestep_min ({self.timestep_min})."
            )
        if self.frames is not None:
            _int_at_least("frames", self.frames, 2, " (motion needs at least 2 frames)")
        _int_at_least("clips_per_step", self.clips_per_step, 1)
        _int_at_least("grad_accum", self.grad_accum, 1)
        _non_negative("max_grad_norm", self.max_grad_norm)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _non_negative("weight_decay", self.weight_decay)
        _choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        _int_at_least("warmup_steps", self.warmup_steps, 0)
        _choice("precision", self.precision, PRECISIONS)
        _int_at_least("attention_slice", self.attention_slice, 0, " (0 = off)")
        _int_at_least("checkpoint_every", self.checkpoint_every, 0, " (0 = off)")
        _int_at_least("keep_checkpoints", self.keep_checkpoints, 1)
        _int_at_least("preview_every", self.preview_every, 0, " (0 = off)")
        if self.checkpoint_every and not self.checkpoint_dir:
            raise SMAInputError("checkpoint_every > 0 needs checkpoint_dir (a folder for the checkpoints).")
        LoRAConfig(rank=self.rank, alpha=self.alpha, targets=self.lora_targets)  # its own range / target checks

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        data = asdict(self)
        data["lora_targets"] = list(self.lora_targets)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise SMAInputError."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SMAInputError(f"unknown training settings {unknown}; known: {sorted(known)}.")
        return cls(**data)

    def differences(self, other: "TrainConfig") -> list[str]:
        """Names of fields that differ and matter for resuming (everything but ``RESUMABLE_CHANGES``)."""
        mine, theirs = self.to_dict(), other.to_dict()
        return [k for k in mine if k not in RESUMABLE_CHANGES and mine[k] != theirs[k]]
