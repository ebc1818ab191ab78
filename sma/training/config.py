"""``TrainConfig``: every setting of a motion-LoRA training run, in frozen sections checked on construction.

Each setting has ONE name: its field name in a section, which is also its name on the node, on the
command line (``learning_rate`` -> ``--learning-rate``), in :meth:`TrainConfig.flat` and in the LoRA
file's metadata. Names are unique across sections, so the flat view is mechanical (:data:`SETTINGS`).
Each field's :class:`~sma.validation.Limit` is the one definition of what it allows.

"Automatic" or "off" for an optional setting (``window``, ``spatial_rank``, ``wavelet_levels``,
``snr_gamma``, ``alpha``, ``wavelet_mode``, ``level_weights``) is None in the library. The node and the
command line spell it 0 (or an empty text); :func:`from_interface` and :func:`to_interface` convert.
Counters such as ``checkpoint_every`` are plain numbers where 0 means never. :func:`limit` gives the node
and the command line each setting's bounds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from ..earlier_names import checkpoint_settings
from ..errors import SMAInputError
from ..loss import SMA_MODES, SMA_OFF, SMAConfig
from ..lora import LoRAConfig
from ..lora.adapters import MAX_RANK
from ..validation import Limit, check_limits, setting

OPTIMIZERS = ("adamw", "adamw8bit")
OBJECTIVES = ("motiondirector", "vmc")
LR_SCHEDULES = ("constant", "cosine")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
MAX_SEED = 0xFFFFFFFF
MAX_STEPS = 100_000
"""The most steps of a run, and of each interval counted in steps."""


@dataclass(frozen=True)
class MotionLoRASettings:
    """Shape of the motion LoRA (the file ADE loads); its initialisation seed is ``sampling.seed``.

    Attributes:
        rank: inner dimension ``r``.
        alpha: scale numerator (update times ``alpha / rank``); None = the rank (scale 1).
        targets: layer groups of the motion modules: "attention" (or "attention_qk": queries and keys only), "ff",
            "proj".
    """

    rank: int = setting(32, low=1, high=MAX_RANK, whole=True)
    alpha: float | None = setting(None, low=0, strict=True, optional=True)
    targets: tuple[str, ...] = ("attention",)

    def __post_init__(self) -> None:
        object.__setattr__(self, "targets", (self.targets,) if isinstance(self.targets, str) else tuple(self.targets))
        check_limits(self)
        self.adapter(seed=0)  # LoRAConfig checks the layer groups

    def adapter(self, seed: int) -> LoRAConfig:
        """The adapter config of the motion LoRA, initialised from ``seed``."""
        return LoRAConfig(rank=self.rank, alpha=self.alpha, targets=self.targets, seed=seed)


@dataclass(frozen=True)
class SpatialSettings:
    """MotionDirector's spatial (appearance) path.

    Attributes:
        spatial_path: train the spatial LoRA beside the motion LoRA.
        spatial_rank: its rank (None = the motion LoRA's; alpha = its rank).
        spatial_learning_rate: its AdamW learning rate.
        spatial_skip_prob: share of steps trained without the spatial path (MotionDirector: 0.2).
        keep_spatial: also return the spatial LoRA (never part of the ADE motion-LoRA file).
    """

    spatial_path: bool = setting(True, switch=True)
    spatial_rank: int | None = setting(None, low=1, high=MAX_RANK, whole=True, optional=True)
    spatial_learning_rate: float = setting(1e-4, low=0, strict=True, high=1.0)
    spatial_skip_prob: float = setting(0.2, low=0, below=1.0)
    keep_spatial: bool = setting(False, switch=True)

    def __post_init__(self) -> None:
        check_limits(self)


@dataclass(frozen=True)
class ObjectiveSettings:
    """What the temporal path fits (the SMA terms are added to it).

    Attributes:
        objective: "motiondirector" (MSE on the noise + the appearance-debiased MSE) or "vmc" (VMC's cosine
            alignment of the frame residuals of the predicted and the true noise, no plain MSE;
            ``sma.training.objectives.residual_alignment``).
        debias_weight / debias_beta: weight and beta of MotionDirector's appearance-debiased loss.
    """

    objective: str = setting("motiondirector", choices=OBJECTIVES)
    debias_weight: float = setting(1.0, low=0)
    debias_beta: float = setting(1.0, low=0)

    def __post_init__(self) -> None:
        check_limits(self)


@dataclass(frozen=True)
class ScheduleSettings:
    """Optimizer and schedule. Steps count optimizer updates of ``clips_per_step * grad_accum`` windows.

    Attributes:
        steps: optimizer steps.
        learning_rate: AdamW learning rate of the motion LoRA.
        optimizer: "adamw" or "adamw8bit" (needs bitsandbytes and a CUDA device).
        weight_decay: AdamW weight decay.
        lr_schedule / warmup_steps: "constant" or "cosine" (to 0) after a linear warm-up.
        max_grad_norm: gradient clipping per LoRA (0 = off).
        clips_per_step: clips (windows) per micro-batch; they need equal latent sizes.
        grad_accum: micro-batches accumulated per optimizer step.
    """

    steps: int = setting(400, low=1, high=MAX_STEPS, whole=True)
    learning_rate: float = setting(5e-4, low=0, strict=True, high=1.0)
    optimizer: str = setting("adamw", choices=OPTIMIZERS)
    weight_decay: float = setting(1e-2, low=0)
    lr_schedule: str = setting("constant", choices=LR_SCHEDULES)
    warmup_steps: int = setting(0, low=0, high=MAX_STEPS, whole=True)
    max_grad_norm: float = setting(1.0, low=0, hint=" (0 = off)")
    clips_per_step: int = setting(1, low=1, whole=True)
    grad_accum: int = setting(1, low=1, whole=True)

    def __post_init__(self) -> None:
        check_limits(self)


@dataclass(frozen=True)
class SamplingSettings:
    """What each step sees: its random choices, its frames and its timesteps.

    Attributes:
        seed: seed of every random choice (clips, windows, timesteps, noise, anchors, LoRA init).
        window: training window in frames; None = the shortest clip, capped at the motion module's
            positional-encoding length (24 for v1, 32 for v2/v3).
        timestep_min / timestep_max: inclusive range of training timesteps (0..num_train_timesteps-1).
        appearance_augment: recoloured copies of each reference clip for the motion path (:mod:`sma.augment`;
            the source makes them before encoding; 0 = none).
    """

    seed: int = setting(0, low=0, high=MAX_SEED, whole=True)
    window: int | None = setting(None, low=2, whole=True, optional=True, hint=" (motion needs at least 2 frames)")
    timestep_min: int = setting(0, low=0, whole=True)
    timestep_max: int = setting(999, low=0, whole=True)
    appearance_augment: int = setting(0, low=0, high=16, whole=True, hint=" (0 = off)")

    def __post_init__(self) -> None:
        check_limits(self)
        if self.timestep_max < self.timestep_min:
            raise SMAInputError(f"timestep_max ({self.timestep_max}) must be >= timestep_min ({self.timestep_min}).")


@dataclass(frozen=True)
class MemorySettings:
    """Precision and memory savers; they change speed and memory, not what is learned (up to rounding).

    Attributes:
        precision: "auto" (CUDA: bf16 if supported else fp16; CPU: fp32), "fp32", "fp16", "bf16";
            frozen weights in that dtype, LoRA weights fp32, autocast for the forward pass.
        gradient_checkpointing: checkpoint resnets, spatial transformers AND motion modules.
        attention_slice: attention in chunks of this many (batch*heads) rows (0 = off).
    """

    precision: str = setting("auto", choices=PRECISIONS)
    gradient_checkpointing: bool = setting(True, switch=True)
    attention_slice: int = setting(0, low=0, whole=True, hint=" (0 = off)")

    def __post_init__(self) -> None:
        check_limits(self)


@dataclass(frozen=True)
class CheckpointSettings:
    """Resumable checkpoints.

    Attributes:
        checkpoint_every: a checkpoint every N steps (0 = only when stopped early, if a folder is given).
        checkpoint_dir: their folder (None = none written).
        keep_checkpoints: the newest this many are kept.
    """

    checkpoint_every: int = setting(0, low=0, high=MAX_STEPS, whole=True, hint=" (0 = off)")
    checkpoint_dir: str | None = None
    keep_checkpoints: int = setting(2, low=1, whole=True)

    def __post_init__(self) -> None:
        check_limits(self)
        if self.checkpoint_dir is not None and not isinstance(self.checkpoint_dir, str):
            raise SMAInputError(f"checkpoint_dir must be a folder path or None, got {self.checkpoint_dir!r}.")
        if self.checkpoint_every and not self.checkpoint_dir:
            raise SMAInputError("checkpoint_every > 0 needs checkpoint_dir (a folder for the checkpoints).")


@dataclass(frozen=True)
class ValidationSettings:
    """What the run shows while it trains; none of it changes the training.

    Attributes:
        preview_every: the one-step estimate of the clip (``on_preview``) every N steps (0 = never).
        validation_every: a validation sample (``sma.training.samples``) every N steps (0 = never).
        validation_steps / validation_guidance / validation_seed: its DDIM steps, classifier-free guidance
            (with a negative prompt) and the seed of its own noise.
        gradient_share_every: every N steps, measure the SMA terms' gradient on the motion LoRA against the
            denoising (+ debiased) loss's (``sma.training.gradient_share``; one extra backward of the SMA terms;
            0 = never).
    """

    preview_every: int = setting(0, low=0, high=MAX_STEPS, whole=True, hint=" (0 = off)")
    validation_every: int = setting(0, low=0, high=MAX_STEPS, whole=True, hint=" (0 = off)")
    validation_steps: int = setting(8, low=1, high=1000, whole=True)
    validation_guidance: float = setting(7.5, low=1.0, high=30.0)
    validation_seed: int = setting(0, low=0, high=MAX_SEED, whole=True)
    gradient_share_every: int = setting(50, low=0, high=MAX_STEPS, whole=True, hint=" (0 = off)")

    def __post_init__(self) -> None:
        check_limits(self)


SECTIONS: dict[str, type] = {
    "sma": SMAConfig, "objective": ObjectiveSettings, "lora": MotionLoRASettings, "spatial": SpatialSettings,
    "schedule": ScheduleSettings,
    "sampling": SamplingSettings, "memory": MemorySettings, "checkpoint": CheckpointSettings,
    "validation": ValidationSettings,
}
"""Section attribute of :class:`TrainConfig` -> its class."""

SETTINGS: dict[str, str] = {f.name: section for section, kind in SECTIONS.items() for f in fields(kind)}
"""Every setting's one name -> the section that holds it (``"learning_rate"`` -> ``"schedule"``)."""

RESUMABLE_CHANGES = frozenset({"steps", *(f.name for f in fields(CheckpointSettings)),
                               *(f.name for f in fields(ValidationSettings))})
"""Settings that may differ between a checkpoint's config and the config that resumes it."""


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run (frozen; stored in checkpoints via :meth:`to_dict`).

    Build it from sections (``TrainConfig(sma=SMAConfig(sma_mode="paper"), schedule=ScheduleSettings(steps=9))``)
    or from flat settings (``TrainConfig.from_flat(steps=9, sma_mode="paper")``). ``sma_mode="off"`` trains
    plain MotionDirector; the other loss settings are then kept but unused.
    """

    sma: SMAConfig = field(default_factory=SMAConfig)
    objective: ObjectiveSettings = field(default_factory=ObjectiveSettings)
    lora: MotionLoRASettings = field(default_factory=MotionLoRASettings)
    spatial: SpatialSettings = field(default_factory=SpatialSettings)
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    memory: MemorySettings = field(default_factory=MemorySettings)
    checkpoint: CheckpointSettings = field(default_factory=CheckpointSettings)
    validation: ValidationSettings = field(default_factory=ValidationSettings)

    def __post_init__(self) -> None:
        for name, kind in SECTIONS.items():
            value = getattr(self, name)
            if not isinstance(value, kind):
                raise SMAInputError(f"TrainConfig.{name} must be a {kind.__name__}, got {type(value).__name__}.")

    @classmethod
    def from_flat(cls, settings: Mapping[str, Any] | None = None, /, **more: Any) -> "TrainConfig":
        """A config from flat settings (a mapping and/or keywords); settings not given keep their defaults.

        Raises:
            SMAInputError: an unknown name, or a value its setting does not allow.
        """
        return cls().with_settings(settings, **more)

    def with_settings(self, settings: Mapping[str, Any] | None = None, /, **more: Any) -> "TrainConfig":
        """This config with some flat settings changed (checked as :meth:`from_flat` checks them)."""
        values = {**(settings or {}), **more}
        unknown = sorted(set(values) - set(SETTINGS))
        if unknown:
            raise SMAInputError(f"unknown training settings {unknown}; known: {sorted(SETTINGS)}.")
        changes = {}
        for section in SECTIONS:
            mine = {k: v for k, v in values.items() if SETTINGS[k] == section}
            if mine:
                changes[section] = replace(getattr(self, section), **mine)
        return replace(self, **changes)

    @property
    def sma_enabled(self) -> bool:
        """True unless ``sma_mode`` is "off"."""
        return self.sma.enabled

    def flat(self) -> dict[str, Any]:
        """Every setting under its one name (JSON-ready: tuples as lists)."""
        return {name: _jsonable(getattr(getattr(self, section), name)) for name, section in SETTINGS.items()}

    def setting(self, name: str) -> Any:
        """The value of one setting."""
        if name not in SETTINGS:
            raise SMAInputError(f"unknown training setting {name!r}; known: {sorted(SETTINGS)}.")
        return getattr(getattr(self, SETTINGS[name]), name)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """JSON-ready ``{section: {setting: value}}`` (what checkpoints store)."""
        flat = self.flat()
        return {section: {name: flat[name] for name in SETTINGS if SETTINGS[name] == section} for section in SECTIONS}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TrainConfig":
        """Inverse of :meth:`to_dict` (unknown sections or settings raise SMAInputError)."""
        unknown = sorted(set(data) - set(SECTIONS))
        if unknown:
            raise SMAInputError(f"unknown config sections {unknown}; known: {list(SECTIONS)}.")
        flat: dict[str, Any] = {}
        for section, values in data.items():
            misplaced = sorted(k for k in values if SETTINGS.get(k) != section)
            if misplaced:
                raise SMAInputError(f"config section {section!r} does not hold {misplaced}.")
            flat |= values
        return cls.from_flat(_tuples(flat))

    def differences(self, other: "TrainConfig") -> list[str]:
        """Names of settings that differ and matter for resuming (all but ``RESUMABLE_CHANGES``)."""
        mine, theirs = self.flat(), other.flat()
        return [k for k in mine if k not in RESUMABLE_CHANGES and mine[k] != theirs[k]]


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _tuples(flat: Mapping[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in flat.items()}


def saved_config(data: Mapping[str, Any], version: int) -> TrainConfig:
    """The config a checkpoint of format ``version`` stored (earlier formats via :mod:`sma.earlier_names`)."""
    if version >= 3:
        return TrainConfig.from_dict(data)
    try:
        flat = checkpoint_settings(dict(data), version)
    except ValueError as error:
        raise SMAInputError(str(error)) from None
    return TrainConfig.from_flat(_tuples(flat))


def limit(name: str) -> Limit | None:
    """The :class:`~sma.validation.Limit` of a setting (None for settings without one, e.g. booleans)."""
    section = SECTIONS[SETTINGS[name]]
    found = next(f for f in fields(section) if f.name == name)
    return found.metadata.get("limit")


INTERFACE_OFF = 0
"""How the node and the command line spell None ("automatic" / "off") for an optional number."""


AUTO = "auto"
"""How the node and the command line spell None for an optional text setting (``wavelet_mode``)."""


def from_interface(values: Mapping[str, Any]) -> dict[str, Any]:
    """Node or command-line values -> library values: 0, "auto" or an empty list for an optional setting become
    None (see the module docstring)."""
    return {name: None if name in OPTIONAL_SETTINGS and _spells_none(value) else value
            for name, value in values.items()}


def _spells_none(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("", AUTO)
    if isinstance(value, (tuple, list)):
        return len(value) == 0
    return not isinstance(value, bool) and value == INTERFACE_OFF


def to_interface(name: str, value: Any) -> Any:
    """Library value -> what the node and the command line show: None becomes 0 (numbers), "auto" (text) or
    "" (lists)."""
    if value is not None or name not in OPTIONAL_SETTINGS:
        return value
    return {"wavelet_mode": AUTO, "level_weights": ""}.get(name, INTERFACE_OFF)


def parse_numbers(name: str, text: str) -> tuple[float, ...]:
    """A list setting typed as text, "1, 0.5, 0.25" (empty: no values)."""
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise SMAInputError(f"{name} must be numbers separated by commas, got {text!r}.") from None


OPTIONAL_SETTINGS = frozenset(
    f.name for kind in SECTIONS.values() for f in fields(kind)
    if f.default is None or getattr(f.metadata.get("limit"), "optional", False)
)
"""Settings whose None means "automatic" or "off"."""

METADATA_OMITS = frozenset({"checkpoint_dir"})
"""Settings a LoRA file's metadata does not record (a local folder is nobody else's business)."""


def metadata_settings(config: TrainConfig) -> dict[str, Any]:
    """The settings a trained LoRA's metadata records, under their names."""
    return {k: v for k, v in config.flat().items() if k not in METADATA_OMITS}


def setting_names() -> list[str]:
    """Every setting's name (what the node, the command line and :meth:`TrainConfig.flat` use)."""
    return list(SETTINGS)


DEFAULTS: dict[str, Any] = TrainConfig().flat()
"""Default of every setting; the node and the command line take theirs from here."""

__all__ = [
    "CheckpointSettings", "DEFAULTS", "OBJECTIVES", "ObjectiveSettings", "LR_SCHEDULES", "MemorySettings", "MotionLoRASettings", "OPTIMIZERS",
    "PRECISIONS", "SECTIONS", "SETTINGS", "SMA_MODES", "SMA_OFF", "SamplingSettings", "ScheduleSettings",
    "SpatialSettings", "TrainConfig", "ValidationSettings", "from_interface", "limit", "metadata_settings",
    "saved_config", "setting_names", "to_interface",
]
