"""Motion LoRA files as AnimateDiff-Evolved reads them: which file ADE loads, and a short description.

ADE's own loader reads only its layout (``*.lora_down/up.weight`` keys, alpha baked in) from
``.safetensors`` files. A LoRA from another trainer (diffusers / kohya / MotionDirector naming, alpha
keys, a pickle container) is converted once into ``<stem>.ade.safetensors`` beside the original and
re-converted when the original is newer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .convert import to_ade_state_dict
from .files import decode_metadata, lora_rank, read_lora_file, save_motion_lora
from .validate import check_sd15_lora

CONVERTED_SUFFIX = ".ade.safetensors"
DESCRIBED_KEYS = ("family", "motion_module", "frames", "width", "height", "steps", "steps_done", "sma_mode", "version")
"""Metadata entries :func:`describe` shows, in this order."""


def converted_path(path: Path) -> Path:
    """Where the ADE-layout copy of a LoRA file goes: ``<stem>.ade.safetensors`` beside it."""
    return path.with_name(path.stem + CONVERTED_SUFFIX)


def ade_readable_name(name: str, path: Path, raw_keys: set[str], state: dict[str, torch.Tensor],
                      metadata: dict[str, Any]) -> str:
    """The name of an ADE-readable version of motion LoRA ``name`` (itself when it already is one).

    ``raw_keys``: the file's keys; ``state`` / ``metadata``: the file read as an ADE-layout LoRA. The
    converted copy is written (atomically) when missing or older than ``path``.
    """
    if raw_keys == set(state) and path.suffix == ".safetensors":
        return name
    converted = converted_path(path)
    if not converted.is_file() or converted.stat().st_mtime < path.stat().st_mtime:
        save_motion_lora(converted, state, {**metadata, "converted_from": path.name})
    return str(Path(name).with_name(converted.name))


def read_for_ade(name: str, path: Path, *,
                 sd15_only: bool = False) -> tuple[str, dict[str, torch.Tensor], dict[str, Any]]:
    """Read a motion LoRA file once: (the name ADE should load, its ADE-layout state, its decoded metadata).

    ``sd15_only``: also refuse a layer that no SD1.5 motion module has with that width (before any copy
    is written), for callers that hand the file to ADE without holding the motion module.

    Raises:
        SMAInputError: unreadable file, not a motion LoRA, a failed check (:mod:`sma.lora.validate`), or a
            layer that no SD1.5 motion module has with that width.
    """
    raw, raw_metadata = read_lora_file(path)
    state, _ = to_ade_state_dict(raw, raw_metadata, source=path.name)
    if sd15_only:
        check_sd15_lora(state, path.name)  # ADE would skip unfit layers one by one: refuse the file as a whole
    metadata = decode_metadata(raw_metadata)
    return ade_readable_name(name, path, set(raw), state, metadata), state, metadata


def describe(name: str, state: dict[str, torch.Tensor], metadata: dict[str, Any]) -> str:
    """One paragraph about a motion LoRA: layers, rank, and the training settings its metadata carries."""
    lines = [f"{name}: {len(state) // 2} layers, rank {lora_rank(state) or 'mixed'}"]
    lines += [f"{key}: {metadata[key]}" for key in DESCRIBED_KEYS if key in metadata]
    return "\n".join(lines)
