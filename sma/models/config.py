"""Model configs of the bases and motion-module families in :mod:`sma.models.families`.

Configs are JSON files shipped in ``sma/models/configs/`` or dicts given in a table entry.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

from ..errors import SMAInputError
from .families import DEFAULT_BASE, BaseSpec, ConfigRef, FamilySpec, Size, base_spec, bases, family_spec, families

CONFIG_DIR = Path(__file__).resolve().parent / "configs"

SD15_FAMILIES = tuple(f.name for f in families(DEFAULT_BASE))
"""Motion-module families this pack can build and train for SD1.5."""

_STRUCTURE_KEYS = ("block_out_channels", "motion_num_attention_heads", "motion_norm_num_groups")


@lru_cache(maxsize=None)
def _read(name: str) -> str:
    path = CONFIG_DIR / f"{name}.json"
    if not path.is_file():
        known = sorted(p.stem for p in CONFIG_DIR.glob("*.json"))
        raise SMAInputError(f"no shipped config {name!r}; known: {', '.join(known)}.")
    return path.read_text(encoding="utf-8")


def load_config(ref: ConfigRef) -> dict:
    """A fresh copy of ``configs/<ref>.json`` (e.g. ``"unet_sd15"``), or of ``ref`` itself when it is a dict."""
    if isinstance(ref, Mapping):
        return copy.deepcopy(dict(ref))
    return json.loads(_read(ref))


def check_family(family: str) -> FamilySpec:
    """The table entry of ``family``; SMAInputError unless the pack can build it."""
    buildable = families()
    spec = next((f for f in buildable if f.name == family), None)
    if spec is None:
        raise SMAInputError(
            f"unknown motion-module family {family!r}; supported: {', '.join(f.name for f in buildable)}."
        )
    return spec


def unet_config(size: Size = "full", base: str = DEFAULT_BASE) -> dict:
    """``UNet2DConditionModel`` config of ``base``: the real model (``full``) or its tiny test model."""
    spec = base_spec(base)
    if size not in spec.unet:
        raise SMAInputError(f"{base} has no {size!r} UNet config; sizes: {', '.join(spec.unet)}.")
    return load_config(spec.unet[size])


def motion_adapter_config(
    family: str, size: Size = "full", *, pe_length: int | None = None, has_mid_block: bool | None = None
) -> dict:
    """``MotionAdapter`` config of a family at full or tiny size.

    The tiny config takes channels, heads and norm groups from its base's ``tiny_motion`` config and the
    family's sequence length and mid block. ``pe_length`` / ``has_mid_block`` override the family's
    values with what a file actually holds.
    """
    spec = check_family(family)
    config = load_config(spec.config)
    if size == "tiny":
        tiny_ref = base_spec(spec.base).tiny_motion
        if tiny_ref is None:
            raise SMAInputError(f"{spec.base} has no tiny motion-module config.")
        tiny = load_config(tiny_ref)
        config.update({k: tiny[k] for k in _STRUCTURE_KEYS})
    elif size != "full":
        raise SMAInputError(f"size must be 'full' or 'tiny', not {size!r}.")
    if pe_length is not None:
        config["motion_max_seq_length"] = int(pe_length)
    if has_mid_block is not None:
        config["use_motion_mid_block"] = bool(has_mid_block)
    return config


def size_of_channels(block_out_channels: list[int] | tuple[int, ...], base: str = DEFAULT_BASE) -> Size | None:
    """The size (``"full"`` / ``"tiny"``) of ``base`` whose UNet has these block channels, else None."""
    for size in base_spec(base).unet:
        if list(block_out_channels) == unet_config(size, base)["block_out_channels"]:
            return size
    return None


def find_base(context_dim: int | None, model_channels: int | None) -> BaseSpec | None:
    """The base whose full-size UNet has this cross-attention width and first-block channels, else None.

    (ComfyUI calls them ``context_dim`` and ``model_channels`` in a model's UNet config.)
    """
    for spec in bases():
        if "full" in spec.unet and spec.context_dim == context_dim:
            if unet_config("full", spec.name)["block_out_channels"][0] == model_channels:
                return spec
    return None


def family_base(family: str) -> BaseSpec:
    """The base a family is made for."""
    return base_spec(family_spec(family).base)
