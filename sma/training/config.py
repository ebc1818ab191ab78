"""``TrainConfig``: every setting of a motion-LoRA training run, validated on construction.

The run's own settings are fields of :class:`TrainConfig`; the loss settings are an
:class:`~sma.loss.SMAConfig` (``config.sma``, None when SMA is off) and the motion LoRA's shape a
:class:`~sma.lora.LoRAConfig` (``config.lora``). :data:`SETTINGS` gives every setting ONE flat name,
the name used by the node, the command line (``--learning-rate``), :meth:`TrainConfig.flat` and the
LoRA file's metadata. :data:`ALIASES` keeps the names of earlier versions readable.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from ..errors import SMAInputError
from ..loss import LOSS_MODES, SMAConfig
from ..lora import LoRAConfig
from ..validation import check_choice, check_int, check_number

SMA_OFF = "off"
SMA_MODES = (*LOSS_MODES, SMA_OFF)
OPTIMIZERS = ("adamw", "adamw8bit")
LR_SCHEDULES = ("constant", "cosine")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")

SMA_SETTINGS: dict[str, str] = {
    "lambda_global": "lambda_global", "lambda_local": "lambda_local", "wavelet_levels": "levels",
    "level_weights": "level_weights", "wavelet": "wavelet", "wavelet_mode": "wavelet_mode",
    "weight_delta": "delta", "weight_base": "base", "weight_sharpness": "weight_sharpness",
    "snr_gamma": "snr_gamma", "phase_loss": "phase_loss",
}
"""Flat name -> :class:`SMAConfig` field (``sma_mode`` -> ``mode`` is handled apart: it may be "off")."""

LORA_SETTINGS: dict[str, str] = {"rank": "rank", "alpha": "alpha", "targets": "targets"}
"""Flat name -> :class:`LoRAConfig` field of the motion LoRA."""

ALIASES: dict[str, str] = {
    "lr_temporal": "learning_rate", "lr_spatial": "spatial_learning_rate", "sma_levels": "wavelet_levels",
    "levels": "wavelet_levels", "spatial_lora": "spatial_path", "frames": "window", "lora_targets": "targets",
}
"""Names of earlier versions (settings, checkpoints of format 1) -> today's name."""

RESUMABLE_CHANGES = frozenset({"steps", "checkpoint_every", "checkpoint_dir", "keep_checkpoints", "preview_every"})
"""Settings that may differ between a checkpoint's config and the config that resumes it."""


def label(name: str) -> str:
    """A setting's name for messages, with its earlier names (``learning_rate / lr_temporal``)."""
    return " / ".join([name, *(old for old, new in ALIASES.items() if new == name and "_" in old)])


def _canonical(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with earlier names replaced by today's (both given: SMAInputError)."""
    out = dict(data)
    for old, new in ALIASES.items():
        if old in out:
            if new in out:
                raise SMAInputError(f"{old} is the earlier name of {new}; give only one of them.")
            out[new] = out.pop(old)
    return out


@dataclass(frozen=True, init=False)
class TrainConfig:
    """Settings of one training run (frozen; JSON via :meth:`to_dict`; stored in checkpoints).

    Build it from nested parts (``TrainConfig(sma=SMAConfig(...), lora=LoRAConfig(...))``) or from
    flat settings (``TrainConfig(rank=16, wavelet_levels=2, sma_mode="paper")``, earlier names too).
    Steps count optimizer updates; each update sees ``clips_per_step * grad_accum`` windows.

    Attributes:
        sma: the SMA loss settings; None trains plain MotionDirector (``sma_mode`` "off").
        lora: rank, alpha and layer groups of the motion LoRA (its seed is ``seed``).
        steps: optimizer steps (>= 1).
        learning_rate / spatial_learning_rate: AdamW learning rates of the motion and spatial LoRA.
        spatial_rank: rank of the spatial LoRA (None = the motion LoRA's rank; alpha = its rank).
        spatial_path: train MotionDirector's spatial (appearance) LoRA beside the temporal one.
        spatial_skip_prob: probability that a step trains without the spatial path (MotionDirector: 0.2).
        keep_spatial: also return the spatial LoRA (it is never part of the ADE motion-LoRA file).
        debias_weight / debias_beta: weight and beta of MotionDirector's appearance-debiased loss.
        seed: seed of every random choice (clips, windows, timesteps, noise, anchors, LoRA init).
        timestep_min / timestep_max: inclusive range of training timesteps (0..num_train_timesteps-1).
        window: training window length in frames; None = the shortest clip, capped at the motion
            module's positional-encoding length (24 for v1, 32 for v2/v3).
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

    sma: SMAConfig | None = SMAConfig()
    lora: LoRAConfig = LoRAConfig()
    steps: int = 400
    learning_rate: float = 5e-4
    spatial_learning_rate: float = 1e-4
    spatial_rank: int | None = None
    spatial_path: bool = True
    spatial_skip_prob: float = 0.2
    keep_spatial: bool = False
    debias_weight: float = 1.0
    debias_beta: float = 1.0
    seed: int = 0
    timestep_min: int = 0
    timestep_max: int = 999
    window: int | None = None
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

    def __init__(self, **settings: Any) -> None:
        own = {f.name: f.default for f in fields(self)}
        values = _canonical(settings)
        sma = values.pop("sma", own["sma"])
        lora = values.pop("lora", own["lora"])
        mode = values.pop("sma_mode", None)
        sma_parts = {SMA_SETTINGS[k]: values.pop(k) for k in list(values) if k in SMA_SETTINGS}
        lora_parts = {LORA_SETTINGS[k]: values.pop(k) for k in list(values) if k in LORA_SETTINGS}
        unknown = sorted(set(values) - set(own))
        if unknown:
            raise SMAInputError(f"unknown training settings {unknown}; known: {sorted(setting_names())}.")
        if mode is not None:
            check_choice("sma_mode", mode, SMA_MODES)
        base_sma = sma if sma is not None else SMAConfig()
        if mode is not None and mode != SMA_OFF:
            sma_parts["mode"] = mode
        sma = replace(base_sma, **sma_parts) if sma_parts or (mode not in (None, SMA_OFF)) else sma
        if mode == SMA_OFF:
            sma = None  # the loss settings above were still checked by SMAConfig
        if lora_parts:
            lora = replace(lora, **lora_parts)
        for name, default in own.items():
            object.__setattr__(self, name, values.get(name, default))
        object.__setattr__(self, "sma", sma)
        object.__setattr__(self, "lora", lora)
        self.validate()

    # --- flat view ------------------------------------------------------------------------------------

    @property
    def sma_mode(self) -> str:
        """"paper", "plus" or "off"."""
        return self.sma.mode if self.sma is not None else SMA_OFF

    def flat(self) -> dict[str, Any]:
        """Every setting under its one flat name (JSON-ready; the LoRA file's metadata uses these)."""
        sma = self.sma if self.sma is not None else SMAConfig()
        out: dict[str, Any] = {"sma_mode": self.sma_mode}
        for name, attr in SMA_SETTINGS.items():
            value = getattr(sma, attr)
            out[name] = list(value) if isinstance(value, tuple) else value
        for name, attr in LORA_SETTINGS.items():
            value = getattr(self.lora, attr)
            out[name] = list(value) if isinstance(value, tuple) else value
        for f in fields(self):
            if f.name not in ("sma", "lora"):
                out[f.name] = getattr(self, f.name)
        return out

    def validate(self) -> None:
        """Raise :class:`SMAInputError` naming the first bad setting and what is allowed."""
        if self.sma is not None and not isinstance(self.sma, SMAConfig):
            raise SMAInputError(f"sma must be an SMAConfig or None, got {type(self.sma).__name__}.")
        if not isinstance(self.lora, LoRAConfig):
            raise SMAInputError(f"lora must be a LoRAConfig, got {type(self.lora).__name__}.")
        check_int("steps", self.steps, 1)
        check_number(label("learning_rate"), self.learning_rate, 0, strict=True)
        check_number(label("spatial_learning_rate"), self.spatial_learning_rate, 0, strict=True)
        if self.spatial_rank is not None:
            check_int("spatial_rank", self.spatial_rank, 1)
        check_number("spatial_skip_prob", self.spatial_skip_prob, 0, below=1.0)
        check_number("debias_weight", self.debias_weight, 0)
        check_number("debias_beta", self.debias_beta, 0)
        check_int("seed", self.seed, 0)
        check_int("timestep_min", self.timestep_min, 0)
        check_int("timestep_max", self.timestep_max, 0)
        if self.timestep_max < self.timestep_min:
            raise SMAInputError(
                f"timestep_max ({self.timestep_max}) must be >= timestep_min ({self.timestep_min})."
            )
        if self.window is not None:
            check_int(label("window"), self.window, 2, " (motion needs at least 2 frames)")
        check_int("clips_per_step", self.clips_per_step, 1)
        check_int("grad_accum", self.grad_accum, 1)
        check_number("max_grad_norm", self.max_grad_norm, 0)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_number("weight_decay", self.weight_decay, 0)
        check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        check_int("warmup_steps", self.warmup_steps, 0)
        check_choice("precision", self.precision, PRECISIONS)
        check_int("attention_slice", self.attention_slice, 0, " (0 = off)")
        check_int("checkpoint_every", self.checkpoint_every, 0, " (0 = off)")
        check_int("keep_checkpoints", self.keep_checkpoints, 1)
        check_int("preview_every", self.preview_every, 0, " (0 = off)")
        if self.checkpoint_every and not self.checkpoint_dir:
            raise SMAInputError("checkpoint_every > 0 needs checkpoint_dir (a folder for the checkpoints).")

    # --- serialisation --------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready nested dict: the run's settings, ``"sma"`` (or None) and ``"lora"``."""
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("sma", "lora")}
        out["sma"] = None if self.sma is None else {
            "mode": self.sma.mode, **{attr: _jsonable(getattr(self.sma, attr)) for attr in SMA_SETTINGS.values()}}
        out["lora"] = {attr: _jsonable(getattr(self.lora, attr)) for attr in LORA_SETTINGS.values()}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """Inverse of :meth:`to_dict`; also reads flat settings and earlier names (format-1 checkpoints).

        Unknown keys raise SMAInputError.
        """
        values = dict(data)
        if isinstance(values.get("sma"), dict):
            values["sma"] = SMAConfig(**values["sma"])
        if isinstance(values.get("lora"), dict):
            values["lora"] = LoRAConfig(**values["lora"])
        return cls(**values)

    def differences(self, other: "TrainConfig") -> list[str]:
        """Flat names of settings that differ and matter for resuming (all but ``RESUMABLE_CHANGES``)."""
        mine, theirs = self.flat(), other.flat()
        return [k for k in mine if k not in RESUMABLE_CHANGES and mine[k] != theirs[k]]

    def setting(self, name: str) -> Any:
        """The value of a flat setting (earlier names accepted)."""
        return self.flat()[ALIASES.get(name, name)]


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def metadata_settings(config: TrainConfig) -> list[str]:
    """The flat settings a trained LoRA's metadata records (the loss settings only when SMA is on)."""
    loss = ["sma_mode", *SMA_SETTINGS] if config.sma is not None else ["sma_mode"]
    return [*loss, "learning_rate", "spatial_learning_rate", "spatial_path", "seed"]


def setting_names() -> list[str]:
    """Every flat setting name (what the node, the command line and :meth:`TrainConfig.flat` use)."""
    return list(TrainConfig().flat())


DEFAULTS: dict[str, Any] = TrainConfig().flat()
"""Default of every flat setting; the node and the command line take theirs from here."""
