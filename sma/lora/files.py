"""Motion LoRA files: atomic safetensors writer with training metadata, and a reader for any known layout.

Metadata is the safetensors ``__metadata__`` (string values only). The writer stores strings as they
are and every other value as JSON, listing those keys in ``sma_json_keys`` so the reader gives the
original values back. It adds ``sma_format`` (:data:`FORMAT`), ``sma_version`` and ``sma_layers``.
"""
from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .. import __version__
from ..atomic import atomic_write_path, error_code
from ..errors import SMAInputError
from ..integrity import CHECKSUM_KEY, verify_checksums, with_checksums
from ..models.files import load_state_dict_file
from .convert import to_ade_state_dict
from .keys import parse_lora_key
from ..earlier_names import metadata_settings
from .validate import check_lora_metadata, check_lora_tensors

FORMAT = "ade-motion-lora/1"  # marker of files written by this pack
FORMAT_KEY = "sma_format"
VERSION_KEY = "sma_version"
LAYERS_KEY = "sma_layers"
JSON_KEYS_KEY = "sma_json_keys"
_RESERVED = (FORMAT_KEY, VERSION_KEY, LAYERS_KEY, JSON_KEYS_KEY, CHECKSUM_KEY)


def check_ade_state_dict(state: Mapping[str, torch.Tensor]) -> int:
    """Check that ``state`` is exactly what ADE loads; return the number of layers (pairs).

    Raises:
        SMAInputError: an alpha key or any key outside the ADE layout, a missing partner, a
            non-2-D or non-float tensor, NaN/inf values, ranks or widths that disagree.
    """
    check_lora_tensors(state, "the LoRA to save")
    canonical, _ = to_ade_state_dict(dict(state), strict=True, source="the LoRA to save")
    odd = sorted(set(state) ^ set(canonical))
    if odd:
        raise SMAInputError(
            f"the LoRA to save has {len(odd)} key(s) outside ADE's layout (e.g. {odd[:3]}); "
            "ADE files hold only '..._lora.down.weight' / '..._lora.up.weight' pairs and no alpha keys."
        )
    for key, tensor in state.items():
        if not tensor.is_floating_point():
            raise SMAInputError(f"LoRA tensor {key!r} has dtype {tensor.dtype}; expected a float dtype.")
    return len(state) // 2


def encode_metadata(metadata: Mapping[str, object] | None, layers: int) -> dict[str, str]:
    """String metadata for safetensors: user fields (non-strings as JSON) plus the pack's markers."""
    out: dict[str, str] = {}
    json_keys: list[str] = []
    for key, value in (metadata or {}).items():
        if key in _RESERVED:
            continue
        if isinstance(value, str):
            out[key] = value
        else:
            try:
                out[key] = json.dumps(value, sort_keys=True)
            except TypeError as error:
                raise SMAInputError(f"metadata {key!r} is not JSON-serialisable ({type(value).__name__}).") from error
            json_keys.append(key)
    out[FORMAT_KEY] = FORMAT
    out[VERSION_KEY] = __version__
    out[LAYERS_KEY] = str(layers)
    out[JSON_KEYS_KEY] = json.dumps(sorted(json_keys))
    return out


def decode_metadata(raw: Mapping[str, str] | None) -> dict[str, object]:
    """Inverse of :func:`encode_metadata` for files of this pack (earlier names made today's); other files'
    metadata unchanged."""
    out: dict[str, object] = dict(raw or {})
    if out.get(FORMAT_KEY) != FORMAT:
        return out
    out.pop(CHECKSUM_KEY, None)
    for key in json.loads(str(out.pop(JSON_KEYS_KEY, "[]"))):
        if key in out:
            out[key] = json.loads(str(out[key]))
    return metadata_settings(out)


def save_motion_lora(path: str | os.PathLike, state: Mapping[str, torch.Tensor],
                     metadata: Mapping[str, object] | None = None) -> Path:
    """Write an ADE-format motion LoRA atomically (temp file in the same folder, then ``os.replace``).

    Args:
        path: target ``.safetensors`` file; its folder must exist.
        state: ADE-layout pairs (``export_motion_lora``'s output); never alpha keys.
        metadata: training config (base family, frames, resolution, SMA settings, steps, rank, alpha...).

    Raises:
        SMAInputError: ``state`` is not in ADE's layout, or the path is not a ``.safetensors`` file
            in an existing folder.
        OSError: the write failed (disk full, permissions); the message names the file, the temp
            file is removed and an existing file at ``path`` is left as it was.
    """
    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        raise SMAInputError(f"motion LoRA files are written as .safetensors, got {path.name!r}.")
    if not path.parent.is_dir():
        raise SMAInputError(f"folder does not exist: {path.parent}.")
    layers = check_ade_state_dict(state)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    header = with_checksums(tensors, encode_metadata(metadata, layers))
    with atomic_write_path(path) as tmp:  # a full disk becomes an SMAInputError there
        try:
            save_file(tensors, str(tmp), metadata=header)
        except (OSError, SafetensorError) as error:  # safetensors reports a full disk as SafetensorError
            raise _write_error(path, error) from error
    return path


def _write_error(path: Path, error: Exception) -> OSError:
    """An OSError (the cause's errno) whose message names the LoRA file and says the old file is intact."""
    code = error_code(error)
    reason = os.strerror(code) if code is not None else str(error)
    message = f"could not write the motion LoRA {path} ({reason}); any previous file there is unchanged"
    return OSError(code, message) if code is not None else OSError(message)


def read_lora_file(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Raw tensors and raw string metadata of a LoRA file (.safetensors, or a weights-only pickle), checked.

    Checks (:mod:`sma.lora.validate`): metadata size and JSON entries, the checksums of files this pack
    wrote (:mod:`sma.integrity`), dtypes, NaN/inf and sizes of every LoRA tensor.

    Raises:
        SMAInputError: missing, corrupt or non-state-dict file (e.g. the unnamed tensor list that
            showlab/MotionDirector saves as ``.pt``), or a failed check (names the file and first bad key).
    """
    path = Path(path)
    metadata: dict[str, str] = {}
    if path.suffix.lower() == ".safetensors" and path.is_file():
        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = dict(handle.metadata() or {})
        except SafetensorError as error:
            raise SMAInputError(f"file is truncated or corrupt: {path.name} ({error}).") from error
    try:
        tensors = load_state_dict_file(path)
    except SMAInputError as error:
        raise SMAInputError(f"cannot read {path.name} as a motion LoRA: {error}") from error
    check_lora_metadata(metadata, path.name)
    verify_checksums(tensors, metadata, path.name, required=any(k in metadata for k in _RESERVED))
    check_lora_tensors(tensors, path.name)
    return tensors, metadata


def load_motion_lora(path: str | os.PathLike, *, strict: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, object]]:
    """Read a motion LoRA of any known layout as an ADE-layout state dict, plus its metadata.

    Layouts: this pack's / ADE's, kijai ComfyUI-ADMotionDirector and ExponentialML
    AnimateDiff-MotionDirector, diffusers/peft, kohya (see :mod:`sma.lora.keys`); alphas are baked into
    ``up``. Dtypes are kept. Metadata of this pack's files comes back with its original value types.

    Args:
        strict: refuse a file that also holds keys that are not motion-module LoRA pairs (e.g. spatial
            layers); False drops them with a warning.

    Raises:
        SMAInputError: unreadable file, a motion module / checkpoint / spatial LoRA instead of a motion
            LoRA, or broken pairs (the message says which keys and prefixes were seen).
    """
    tensors, raw_metadata = read_lora_file(path)
    state, dropped = to_ade_state_dict(tensors, raw_metadata, strict=strict, source=Path(path).name)
    if dropped:
        warnings.warn(f"{Path(path).name}: ignored {len(dropped)} key(s) that are not motion-module LoRA "
                      f"pairs, e.g. {dropped[:3]}", stacklevel=2)
    return state, decode_metadata(raw_metadata)


def lora_rank(state: Mapping[str, torch.Tensor]) -> int | None:
    """The rank shared by every layer of an ADE-layout LoRA, or None when ranks differ."""
    ranks = {t.shape[0] for k, t in state.items() if (p := parse_lora_key(k)) and p.role == "down"}
    return ranks.pop() if len(ranks) == 1 else None
