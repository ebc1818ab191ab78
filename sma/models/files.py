"""Read weight files safely and load AnimateDiff motion modules from them."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..errors import SMAInputError
from .detect import MotionModuleInfo, detect_motion_module
from .families import REFUSED_VARIANTS, buildable, family_spec, families_help
from .keys import strip_wrapper_prefix

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
_CONTAINERS = ("state_dict", "module")


def _corrupt(path: Path, error: BaseException) -> SMAInputError:
    return SMAInputError(f"file is truncated or corrupt: {path.name} ({error}); re-download it.")


def _read_pickle(path: Path) -> object:
    """``torch.load`` with ``weights_only=True``; zip checkpoints are memory-mapped."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as error:
        if "weights only" in str(error).lower():
            raise SMAInputError(
                f"{path.name} contains Python objects other than tensors, which are refused for safety "
                "(torch.load weights_only); use a .safetensors version of the file."
            ) from error
        raise _corrupt(path, error) from error
    except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile, OSError) as error:
        raise _corrupt(path, error) from error


def _unwrap(content: object, path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint, descending into ``state_dict`` / ``module`` containers.

    Non-tensor entries beside the tensors (step counters, configs) are dropped.
    """
    while isinstance(content, dict):
        inner = next((content[k] for k in _CONTAINERS if isinstance(content.get(k), dict)), None)
        if inner is None:
            break
        content = inner
    if not isinstance(content, dict):
        raise SMAInputError(f"{path.name} does not hold a state dict (found {type(content).__name__}).")
    tensors = {str(k): v for k, v in content.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise SMAInputError(f"{path.name} contains no tensors (keys: {list(content)[:5]}).")
    return tensors


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` or ``.ckpt/.pt/.pth/.bin`` file, on the CPU.

    Raises:
        SMAInputError: missing file, unknown extension, truncated or corrupt file, pickled non-tensor objects.
    """
    path = Path(path)
    if not path.is_file():
        raise SMAInputError(f"file not found: {path}.")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        try:
            return load_file(path, device="cpu")
        except SafetensorError as error:
            raise _corrupt(path, error) from error
    if suffix in PICKLE_SUFFIXES:
        return _unwrap(_read_pickle(path), path)
    raise SMAInputError(
        f"{path.name}: unknown file type {suffix or '(none)'!r}; use .safetensors or {', '.join(PICKLE_SUFFIXES)}."
    )


def load_motion_module(
    path_or_state_dict: str | os.PathLike | dict[str, torch.Tensor], dtype: torch.dtype | None = None
) -> tuple[dict[str, torch.Tensor], MotionModuleInfo]:
    """An AnimateDiff motion module of a buildable family in the original naming, and what it is.

    Wrapper prefixes (``module.``) are removed, keys outside the motion modules dropped (as
    AnimateDiff-Evolved does), tensors cast to ``dtype`` when given.

    Raises:
        SMAInputError: not a motion module, a recognised-only family (SDXL, HotshotXL), or a PIA /
            FancyVideo module.
    """
    if isinstance(path_or_state_dict, dict):
        state_dict = dict(path_or_state_dict)
    else:
        state_dict = load_state_dict_file(path_or_state_dict)
    state_dict = strip_wrapper_prefix(state_dict)
    info = detect_motion_module(state_dict)
    if not buildable(family_spec(info.family)):
        raise SMAInputError(
            f"{info.base} motion modules are not supported yet (this one is {info.family}); "
            f"use a supported motion module ({families_help()})."
        )
    for key, name in REFUSED_VARIANTS.items():
        if key in state_dict:
            raise SMAInputError(f"{name} motion modules are not supported; use {families_help()}.")
    state_dict = {k: v for k, v in state_dict.items() if ".motion_modules." in k}
    if dtype is not None:
        state_dict = {k: v.to(dtype) for k, v in state_dict.items()}
    return state_dict, info
