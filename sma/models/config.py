"""The JSON configs shipped in ``sma/models/configs/`` and the motion-module families they describe."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Literal

from ..errors import SMAInputError

CONFIG_DIR = Path(__file__).resolve().parent / "configs"

SD15_FAMILIES = ("v1", "v2", "v3", "AnimateLCM")
"""Motion-module families this pack can build and train (all for SD1.5)."""

_FAMILY_FILES = {"v1": "motion_adapter_v1", "v2": "motion_adapter_v2", "v3": "motion_adapter_v3",
                 "AnimateLCM": "motion_adapter_animatelcm"}
_STRUCTURE_KEYS = ("block_out_channels", "motion_num_attention_heads", "motion_norm_num_groups")

Size = Literal["full", "tiny"]


@lru_cache(maxsize=None)
def _read(name: str) -> str:
    path = CONFIG_DIR / f"{name}.json"
    if not path.is_file():
        known = sorted(p.stem for p in CONFIG_DIR.glob("*.json"))
        raise SMAInputError(f"no shipped config {name!r}; known: {', '.join(known)}.")
    return path.read_text(encoding="utf-8")


def load_config(name: str) -> dict:
    """A fresh copy of ``configs/<name>.json`` (e.g. ``"unet_sd15"``, ``"vae_sd15"``, ``"unet_tiny"``)."""
    return json.loads(_read(name))


def check_family(family: str) -> None:
    """Raise SMAInputError unless ``family`` is one of :data:`SD15_FAMILIES`."""
    if family not in _FAMILY_FILES:
        raise SMAInputError(f"unknown motion-module family {family!r}; supported: {', '.join(SD15_FAMILIES)}.")


def unet_config(size: Size = "full") -> dict:
    """``UNet2DConditionModel`` config: real SD1.5 (``full``) or the tiny test model (same key structure)."""
    return load_config("unet_sd15" if size == "full" else "unet_tiny")


def motion_adapter_config(
    family: str, size: Size = "full", *, pe_length: int | None = None, has_mid_block: bool | None = None
) -> dict:
    """``MotionAdapter`` config of a family at full SD1.5 or tiny size.

    The tiny config takes channels, heads and norm groups from ``motion_adapter_tiny.json`` and the
    family's sequence length and mid block. ``pe_length`` / ``has_mid_block`` override the family's
    values with what a file actually holds.
    """
    check_family(family)
    config = load_config(_FAMILY_FILES[family])
    if size == "tiny":
        tiny = load_config("motion_adapter_tiny")
        config.update({k: tiny[k] for k in _STRUCTURE_KEYS})
    elif size != "full":
        raise SMAInputError(f"size must be 'full' or 'tiny', not {size!r}.")
    if pe_length is not None:
        config["motion_max_seq_length"] = int(pe_length)
    if has_mid_block is not None:
        config["use_motion_mid_block"] = bool(has_mid_block)
    return config


def size_of_channels(block_out_channels: list[int] | tuple[int, ...]) -> Size | None:
    """``"full"`` or ``"tiny"`` when the channels are those of a shipped config, else None."""
    for size in ("full", "tiny"):
        if list(block_out_channels) == unet_config(size)["block_out_channels"]:
            return size
    return None
