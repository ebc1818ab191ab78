"""The table of image-model bases and AnimateDiff motion-module families: every fact about them lives here.

One declarative :class:`BaseSpec` per base (SD1.5) and one :class:`FamilySpec` per motion-module family
(v1, v2, v3, AnimateLCM; SDXL and HotshotXL are recognised so they can be refused clearly). Building,
detection, GroupNorm matching, training and previews read these entries; adding a base is one
:func:`register_base` call (plus checkpoint loaders such as :mod:`sma.models.sd15`), adding a family one
:func:`register_family` call. Configs are the name of a JSON file in ``sma/models/configs`` or a dict,
resolved by :mod:`sma.models.config`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Union

from ..errors import SMAInputError

ConfigRef = Union[str, Mapping[str, Any]]
FrameMode = Literal["per_frame", "across_frames"]
Size = Literal["full", "tiny"]
DEFAULT_BASE = "SD1.5"
POS_ENCODER = "pos_encoder"
"""Every key of a positional-encoding tensor contains this (``...attention_blocks.0.pos_encoder.pe``)."""
PE_KEY = "pos_encoder.pe"
"""Name ending of AnimateDiff's positional encodings ``[1, L, C]``."""


@dataclass(frozen=True)
class BaseSpec:
    """An image model that motion modules are made for.

    Attributes:
        name: e.g. ``"SD1.5"``; what ``MotionModuleInfo.base`` and the LoRA metadata ``base`` say.
        unet: ``UNet2DConditionModel`` config per size: ``full`` (the real model) and/or ``tiny`` (a test
            model with the same key structure).
        tiny_motion: ``MotionAdapter`` channels / heads / norm groups of tiny motion modules (None: no tiny size).
        vae: ``AutoencoderKL`` config of its checkpoints (None: not shipped).
        text_encoder: CLIP text-model config of its checkpoints (None: not shipped).
        noise_schedule: ``DDPMScheduler`` config motion modules are trained with.
        context_dim: width D of the full model's prompt embeddings ``[B, T, D]`` (cross-attention dim).
        latent_channels: C of its latents ``[F, C, h, w]``.
        latent_scaling: the VAE scaling factor latents are multiplied by.
        pixels_per_latent: image side / latent side.
        latent_rgb_factors: C rows of (R, G, B) weights mapping scaled latents to rough RGB in [-1, 1].
        latent_rgb_bias: added to that RGB.
        down_blocks: UNet down blocks (= motion-module down blocks; tells files of different bases apart).
        motion_layers_per_block: motion modules per down block (up blocks have one more).
    """

    name: str
    unet: Mapping[str, ConfigRef]
    tiny_motion: ConfigRef | None
    vae: ConfigRef | None
    text_encoder: ConfigRef | None
    noise_schedule: ConfigRef
    context_dim: int
    latent_channels: int
    latent_scaling: float
    pixels_per_latent: int
    latent_rgb_factors: tuple[tuple[float, float, float], ...]
    down_blocks: int
    motion_layers_per_block: int
    latent_rgb_bias: tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclass(frozen=True)
class Detection:
    """What a motion-module file of a family holds; None means "anything".

    A file is the family whose every set fact holds and which sets the most facts, so v3 ("encodings
    of 32 positions, no mid block") wins over v1 ("encodings, no mid block").

    Attributes:
        encodings: True: has tensors named ``...<pe_key>``; False: has no ``pos_encoder`` tensor at all.
        pe_key: name ending of its positional encodings ``[1, L, C]``.
        mid_block: whether it has a ``mid_block`` motion module.
        pe_length: L of its encodings.
        down_blocks: its down blocks; None = its base's (needed only for bases this pack cannot build).
    """

    encodings: bool | None = True
    pe_key: str = PE_KEY
    mid_block: bool | None = None
    pe_length: int | None = None
    down_blocks: int | None = None

    def facts(self) -> int:
        """How many facts are set (the more, the more specific)."""
        return sum(v is not None for v in (self.encodings, self.mid_block, self.pe_length)) + 1


@dataclass(frozen=True)
class FamilySpec:
    """A family of AnimateDiff motion modules.

    Attributes:
        name: e.g. ``"v3"``.
        base: the :class:`BaseSpec` name it is made for.
        config: full-size ``MotionAdapter`` config; None: recognised only (cannot be built or trained).
        pe_length: L of the positional encodings its files hold; None: its files have none (sinusoids
            of the config's ``motion_max_seq_length`` are built), or a recognised-only family.
        group_norms: how AnimateDiff-Evolved normalises for it: every GroupNorm (spatial and temporal) per
            frame, or across the frames of each video (v1).
        detect: how its files are recognised.
    """

    name: str
    base: str
    config: ConfigRef | None
    pe_length: int | None
    group_norms: FrameMode = "per_frame"
    detect: Detection = field(default_factory=Detection)


_BASES: dict[str, BaseSpec] = {}
_FAMILIES: dict[str, FamilySpec] = {}

REFUSED_VARIANTS: Mapping[str, str] = {"conv_in.weight": "PIA", "FancyVideo": "FancyVideo"}
"""Key parts of motion-module variants that change the model (PIA: 9-channel ``conv_in``), and their names."""


def register_base(spec: BaseSpec) -> BaseSpec:
    """Add a base to the table (checked for consistency); returns it."""
    if spec.name in _BASES:
        raise SMAInputError(f"base {spec.name!r} is already registered.")
    if len(spec.latent_rgb_factors) != spec.latent_channels:
        raise SMAInputError(f"base {spec.name!r}: {len(spec.latent_rgb_factors)} latent->RGB rows for "
                            f"{spec.latent_channels} latent channels.")
    if not spec.unet:
        raise SMAInputError(f"base {spec.name!r} has no UNet config.")
    _BASES[spec.name] = spec
    return spec


def register_family(spec: FamilySpec) -> FamilySpec:
    """Add a motion-module family to the table; a buildable one (with a config) needs its base registered."""
    if spec.name in _FAMILIES:
        raise SMAInputError(f"motion-module family {spec.name!r} is already registered.")
    if spec.config is not None and spec.base not in _BASES:
        raise SMAInputError(f"family {spec.name!r}: register its base {spec.base!r} first.")
    if spec.detect.down_blocks is None and spec.base not in _BASES:
        raise SMAInputError(f"family {spec.name!r}: give its down_blocks (its base {spec.base!r} is not registered).")
    _FAMILIES[spec.name] = spec
    return spec


def base_spec(name: str) -> BaseSpec:
    """The registered base ``name``; SMAInputError naming the known ones otherwise."""
    try:
        return _BASES[name]
    except KeyError:
        raise SMAInputError(f"unknown base {name!r}; supported: {', '.join(_BASES)}.") from None


def family_spec(name: str) -> FamilySpec:
    """The table entry of family ``name`` (buildable or recognised only); SMAInputError otherwise."""
    try:
        return _FAMILIES[name]
    except KeyError:
        raise SMAInputError(f"unknown motion-module family {name!r}; known: {', '.join(_FAMILIES)}.") from None


def bases() -> tuple[BaseSpec, ...]:
    """Every registered base, in registration order."""
    return tuple(_BASES.values())


def buildable(spec: FamilySpec) -> bool:
    """Whether the pack can build and train motion modules of this family."""
    return spec.config is not None and spec.base in _BASES


def families(base: str | None = None) -> tuple[FamilySpec, ...]:
    """Buildable families (of ``base``, or all), in registration order."""
    return tuple(f for f in _FAMILIES.values() if buildable(f) and base in (None, f.base))


def families_help() -> str:
    """``"SD1.5: v1, v2, v3 or AnimateLCM"`` for every base, for error messages."""
    parts = []
    for base in _BASES:
        names = [f.name for f in families(base)]
        listed = f"{', '.join(names[:-1])} or {names[-1]}" if len(names) > 1 else "".join(names)
        parts.append(f"{base}: {listed}")
    return "; ".join(parts)


def down_blocks_of(spec: FamilySpec) -> int:
    """Down blocks of the family's files: its own detection fact, else its base's."""
    return spec.detect.down_blocks if spec.detect.down_blocks is not None else _BASES[spec.base].down_blocks


def registered_pe_keys() -> tuple[str, ...]:
    """The distinct encoding name endings the families' files use."""
    return tuple(dict.fromkeys(f.detect.pe_key for f in _FAMILIES.values()))


def identify_family(down_blocks: int, has_mid_block: bool, pe_lengths: Mapping[str, int | None],
                    has_pos_encoder: bool) -> FamilySpec:
    """The most specific family whose detection facts hold for a file (or model).

    Args:
        down_blocks: number of ``down_blocks`` with motion modules.
        has_mid_block: whether a ``mid_block`` motion module exists.
        pe_lengths: for each encoding name ending present (``pos_encoder.pe``), L of those ``[1, L, C]`` tensors.
        has_pos_encoder: whether any ``pos_encoder`` tensor exists.

    Raises:
        SMAInputError: no family fits; says which down-block counts the known bases have.
    """
    best: FamilySpec | None = None
    for spec in _FAMILIES.values():
        d = spec.detect
        if down_blocks_of(spec) != down_blocks:
            continue
        if d.encodings is True and d.pe_key not in pe_lengths or d.encodings is False and has_pos_encoder:
            continue
        if d.mid_block is not None and d.mid_block != has_mid_block:
            continue
        if d.pe_length is not None and pe_lengths.get(d.pe_key) != d.pe_length:
            continue
        if best is None or d.facts() > best.detect.facts():
            best = spec
    if best is not None:
        return best
    counts: dict[str, int] = {}
    for spec in _FAMILIES.values():
        counts.setdefault(spec.base, down_blocks_of(spec))
    if down_blocks in counts.values():
        base = next(b for b, n in counts.items() if n == down_blocks)
        raise SMAInputError(f"this {base} motion module fits none of the known families "
                            f"({', '.join(f.name for f in _FAMILIES.values() if f.base == base)}).")
    raise SMAInputError(
        f"not a motion module of {' or '.join(counts)}: the highest down_blocks index is {down_blocks - 1} "
        f"({', '.join(f'{b} has {n - 1}' for b, n in counts.items())})."
    )


# --- the table ----------------------------------------------------------------------------------------

SD15 = register_base(BaseSpec(
    name="SD1.5",
    unet={"full": "unet_sd15", "tiny": "unet_tiny"},
    tiny_motion="motion_adapter_tiny",
    vae="vae_sd15",
    text_encoder="text_encoder_sd15",
    noise_schedule="scheduler_animatediff",
    context_dim=768,
    latent_channels=4,
    latent_scaling=0.18215,
    pixels_per_latent=8,
    # ComfyUI's "latent2rgb" preview factors for SD1.5 (rows: latent channels 0..3; columns: R, G, B)
    latent_rgb_factors=(
        (0.3512, 0.2297, 0.3227),
        (0.3250, 0.4974, 0.2350),
        (-0.2829, 0.1762, 0.2721),
        (-0.2120, -0.2616, -0.7177),
    ),
    down_blocks=4,
    motion_layers_per_block=2,
))

# Order is the listing order; detection picks the most specific match, not the first.
register_family(FamilySpec("v1", "SD1.5", "motion_adapter_v1", pe_length=24, group_norms="across_frames",
                           detect=Detection(mid_block=False)))
register_family(FamilySpec("v2", "SD1.5", "motion_adapter_v2", pe_length=32, detect=Detection(mid_block=True)))
register_family(FamilySpec("v3", "SD1.5", "motion_adapter_v3", pe_length=32,
                           detect=Detection(mid_block=False, pe_length=32)))
register_family(FamilySpec("AnimateLCM", "SD1.5", "motion_adapter_animatelcm", pe_length=None,
                           detect=Detection(encodings=False)))
register_family(FamilySpec("SDXL", "SDXL", None, pe_length=None, detect=Detection(encodings=None, down_blocks=3)))
register_family(FamilySpec("HotshotXL", "SDXL", None, pe_length=None,
                           detect=Detection(pe_key="pos_encoder.positional_encoding", down_blocks=3)))
