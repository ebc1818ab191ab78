"""Resumable training checkpoints: one safetensors file per checkpoint, written atomically.

Tensors (LoRA weights, optimizer moments, RNG states) are the file's tensors; everything else (step,
config, loss history, optimizer hyper-parameters, LR-scheduler and GradScaler state, Python/NumPy RNG
state) is JSON in the file's ``__metadata__`` under ``"sma_checkpoint"``. No pickle anywhere, so loading
a checkpoint cannot run code. Files are named ``checkpoint-<step:06d>.safetensors``.
"""

from __future__ import annotations

import json
import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..atomic import atomic_write_path
from ..errors import SMAInputError
from ..integrity import first_non_finite, verify_checksums, with_checksums

METADATA_KEY = "sma_checkpoint"
FORMAT_VERSION = 3
"""3: the config is ``TrainConfig.to_dict()``, one entry per section, settings under their names."""
READABLE_VERSIONS = (1, 2, 3)
"""1 (flat, earlier names) and 2 (loss and LoRA nested) are read through ``sma.earlier_names``."""
UNCHECKED_VERSIONS = (1,)
"""Formats written before checkpoints carried checksums (:mod:`sma.integrity`); read without them."""
_NAME = re.compile(r"^checkpoint-(\d{6,})\.safetensors$")


def checkpoint_path(folder: str | os.PathLike, step: int) -> Path:
    return Path(folder) / f"checkpoint-{step:06d}.safetensors"


def list_checkpoints(folder: str | os.PathLike) -> list[Path]:
    """Checkpoint files in ``folder``, oldest step first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(folder: str | os.PathLike) -> Path | None:
    """The newest checkpoint file in ``folder``, or None."""
    files = list_checkpoints(folder)
    return files[-1] if files else None


def save_checkpoint(path: str | os.PathLike, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> Path:
    """Write ``tensors`` + JSON ``state`` to ``path`` atomically (temp file in the same folder + os.replace)."""
    path = Path(path)
    payload = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    metadata = with_checksums(payload, {METADATA_KEY: json.dumps({"format_version": FORMAT_VERSION, **state})})
    with atomic_write_path(path) as temp:
        save_file(payload, str(temp), metadata=metadata)
    return path


def load_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(tensors, state)`` of a checkpoint file (CPU tensors).

    Files carry checksums (:mod:`sma.integrity`), so a damaged checkpoint is refused, never resumed from.

    Raises:
        SMAInputError: not a file written by :func:`save_checkpoint`, damaged, or NaN/inf tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise SMAInputError(f"no checkpoint file at {path}.")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as error:  # safetensors raises its own error types for damaged files
        raise SMAInputError(f"{path} is not a readable safetensors checkpoint: {error}") from error
    raw = metadata.get(METADATA_KEY)
    if raw is None:
        raise SMAInputError(f"{path} is a safetensors file but not an SMA training checkpoint (no '{METADATA_KEY}').")
    try:
        state = json.loads(raw)
    except ValueError:
        raise SMAInputError(f"{path}: '{METADATA_KEY}' is not valid JSON; the checkpoint is damaged.") from None
    found = state.get("format_version") if isinstance(state, dict) else None
    if found not in READABLE_VERSIONS:
        raise SMAInputError(f"{path}: checkpoint format {found!r}, "
                            f"this version reads {', '.join(map(str, READABLE_VERSIONS))}.")
    verify_checksums(tensors, metadata, str(path), required=found not in UNCHECKED_VERSIONS)
    bad = first_non_finite(tensors)
    if bad is not None:
        raise SMAInputError(f"{path}: {bad!r} holds NaN/inf values; resume from an earlier checkpoint.")
    return tensors, state


def prune_checkpoints(folder: str | os.PathLike, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoint files."""
    for old in list_checkpoints(folder)[:-keep]:
        old.unlink(missing_ok=True)


# --- optimizer state --------------------------------------------------------------------------------------

def flatten_optimizer_state(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors (``optimizer.<param>.<name>``) and JSON."""
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for index, entries in state_dict["state"].items():
        plain[str(index)] = {}
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{name}"] = value
            else:
                plain[str(index)][name] = value
    return tensors, {"param_groups": state_dict["param_groups"], "plain": plain}


def unflatten_optimizer_state(tensors: dict[str, torch.Tensor], data: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`flatten_optimizer_state`."""
    state: dict[int, dict[str, Any]] = {int(i): dict(v) for i, v in data["plain"].items()}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else dict(g) for g in data["param_groups"]]
    return {"state": state, "param_groups": groups}


# --- random number generators -----------------------------------------------------------------------------

def capture_rng(generator: torch.Generator) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """States of the trainer's generator, torch (CPU, CUDA), Python ``random`` and NumPy."""
    tensors = {"rng.trainer": generator.get_state(), "rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    version, values, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    plain = {"python": [version, list(values), gauss],
             "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)]}
    return tensors, plain


def restore_rng(generator: torch.Generator, tensors: dict[str, torch.Tensor], plain: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng` (CUDA states only where this machine has the same GPUs)."""
    generator.set_state(tensors["rng.trainer"])
    torch.set_rng_state(tensors["rng.torch"])
    cuda_keys = sorted((k for k in tensors if k.startswith("rng.cuda.")), key=lambda k: int(k.split(".")[-1]))
    cuda = [tensors[k] for k in cuda_keys]
    if cuda and torch.cuda.is_available() and torch.cuda.device_count() == len(cuda):
        torch.cuda.set_rng_state_all(cuda)
    version, values, gauss = plain["python"]
    random.setstate((version, tuple(values), gauss))
    kind, keys, pos, has_gauss, cached = plain["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
