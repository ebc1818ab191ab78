"""Checks on a motion LoRA file's content, run by every reader before anything is applied.

Each check raises :class:`~sma.errors.SMAInputError` naming the file and the first bad key:

- :func:`check_lora_metadata`: metadata too large, JSON entries that are not valid JSON;
- :func:`check_lora_tensors`: too many tensors, non-float (or non-numeric alpha) dtypes, NaN/inf,
  values or shapes far outside what a LoRA holds;
- :func:`check_lora_widths`: ``down [r, in]`` / ``up [out, r]`` pairs whose widths do not fit the layer
  they name (to_q/k/v/out and proj_in/out are ``C x C``, ``ff.net.0.proj`` ``8C x C``, ``ff.net.2``
  ``C x 4C``), disagree within one motion module or block, or between mirrored down/up blocks;
- :func:`check_lora_fits`: layers absent from the chosen motion module or present with another width.

Ranks that differ between ``down`` and ``up``, missing partners and duplicated keys after name
normalisation are refused by :func:`sma.lora.convert.to_ade_state_dict`, which calls the width check.
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping

import torch

from ..errors import SMAInputError
from ..integrity import peak_magnitudes
from ..models.layout import original_motion_layout
from .adapters import MAX_RANK
from .keys import MOTION_LORA_MODULE, parse_lora_key

MAX_TENSORS = 20_000
MAX_WIDTH = 65_536
MAX_VALUES = 1 << 30
"""Most values in one file (4 GiB of fp32)."""
MAX_ABS_VALUE = 1e4
"""Largest |value| accepted; trained LoRA weights stay far below (fp16 saturates at 65504)."""
MAX_METADATA_BYTES = 1 << 20
JSON_METADATA_KEYS = ("sma_json_keys", "lora_adapter_metadata")
"""Metadata entries that must be JSON (the pack's list of JSON-encoded keys; diffusers' peft config)."""
SD15_CHANNELS = (320, 640, 1280, 1280)
SD15_LAYERS_PER_BLOCK = 2

_BLOCK = re.compile(r"^(?P<kind>down_blocks|up_blocks|mid_block)(?:\.(?P<index>\d+))?\.motion_modules\.(?P<m>\d+)\.")
# width of a layer as (out, in) in units of the module's channels C
_KIND_FACTORS = (("ff.net.0.proj", (8, 1)), ("ff.net.2", (1, 4)))


def _refuse(source: str, key: str, problem: str) -> SMAInputError:
    return SMAInputError(f"{source}: {key!r} {problem}")


def check_lora_metadata(metadata: Mapping[str, str], source: str) -> None:
    """Refuse metadata over :data:`MAX_METADATA_BYTES` or JSON entries that do not parse.

    The pack's own files list their JSON-encoded keys in ``sma_json_keys``; those must parse too.
    """
    size = sum(len(k.encode()) + len(str(v).encode()) for k, v in metadata.items())
    if size > MAX_METADATA_BYTES:
        largest = max(metadata, key=lambda k: len(str(metadata[k])))
        raise _refuse(source, largest, f"makes the metadata {size:,} bytes (at most {MAX_METADATA_BYTES:,} "
                                       "are read); the file is not a motion LoRA this pack can trust.")
    listed: list[str] = []
    for key in JSON_METADATA_KEYS:
        if key in metadata:
            value = _json_entry(metadata, key, source, "")
            if key == "sma_json_keys":
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise _refuse(source, key, "in the metadata must be a JSON list of key names.")
                listed = [v for v in value if v in metadata]
    for key in listed:
        _json_entry(metadata, key, source, " (listed in 'sma_json_keys')")


def _json_entry(metadata: Mapping[str, str], key: str, source: str, why: str) -> object:
    try:
        return json.loads(metadata[key])
    except ValueError:
        raise _refuse(source, key, f"in the metadata is not valid JSON{why}.") from None


def _check_values(key: str, tensor: torch.Tensor, peak: float, source: str) -> None:
    if not math.isfinite(peak):
        bad = int((~torch.isfinite(tensor.detach())).sum())
        raise _refuse(source, key, f"holds {bad} NaN/inf value(s) of {tensor.numel()}; the file is broken "
                                   "(a diverged training or a damaged download).")
    if peak > MAX_ABS_VALUE:
        raise _refuse(source, key, f"holds a value of magnitude {peak:.3g} (at most {MAX_ABS_VALUE:g} is "
                                   "plausible for a LoRA); the file is broken.")


def check_lora_tensors(tensors: Mapping[str, torch.Tensor], source: str) -> None:
    """Refuse bad tensors of a LoRA file in file order (non-LoRA keys are left to the converter).

    ``down`` / ``up``: 2-D float, ``rank <= MAX_RANK``, widths ``<= MAX_WIDTH``, finite and plausible
    values. ``alpha``: one finite positive number (float or integer dtype).
    """
    if len(tensors) > MAX_TENSORS:
        raise SMAInputError(f"{source}: {len(tensors):,} tensors (at most {MAX_TENSORS:,}); not a motion LoRA.")
    total = sum(t.numel() for t in tensors.values())
    if total > MAX_VALUES:
        raise SMAInputError(f"{source}: {total:,} values (at most {MAX_VALUES:,}); far too large for a motion LoRA.")
    parsed_keys = {key: parse_lora_key(key) for key in tensors}
    peaks = peak_magnitudes({k: t for k, t in tensors.items() if parsed_keys[k] is not None})
    for key, tensor in tensors.items():
        parsed = parsed_keys[key]
        if parsed is None:
            continue
        if parsed.role == "alpha":
            if tensor.dtype in (torch.bool, torch.complex64, torch.complex128) or tensor.numel() != 1:
                raise _refuse(source, key, f"must hold one number, got {tensor.dtype} {tuple(tensor.shape)}.")
            alpha = float(tensor.reshape(-1)[0].float())
            if not (0 < alpha <= MAX_ABS_VALUE):
                raise _refuse(source, key, f"is {alpha}; alpha must be a positive number.")
            continue
        if not tensor.is_floating_point():
            raise _refuse(source, key, f"has dtype {str(tensor.dtype).removeprefix('torch.')}; LoRA weights are "
                                       "float (fp16, bf16 or fp32).")
        if tensor.ndim == 2:
            rank = tensor.shape[0] if parsed.role == "down" else tensor.shape[1]
            width = tensor.shape[1] if parsed.role == "down" else tensor.shape[0]
            if rank > MAX_RANK or width > MAX_WIDTH:
                raise _refuse(source, key, f"is {tuple(tensor.shape)}: rank at most {MAX_RANK}, widths at most "
                                           f"{MAX_WIDTH}.")
        if tensor.numel() == 0:
            raise _refuse(source, key, f"is empty {tuple(tensor.shape)}.")
        _check_values(key, tensor, peaks[key], source)


def _channels(module: str, out_features: int, in_features: int) -> int | None:
    """The module's channel count C implied by one layer's (out, in), or None when they cannot fit."""
    out_factor, in_factor = next((f for suffix, f in _KIND_FACTORS if module.endswith(suffix)), (1, 1))
    if out_features % out_factor or in_features % in_factor:
        return None
    channels = out_features // out_factor
    return channels if in_features // in_factor == channels else None


def check_lora_widths(pairs: Mapping[str, tuple[torch.Tensor, torch.Tensor]], source: str) -> None:
    """Refuse ``{module: (down, up)}`` pairs whose widths do not fit their layers (see the module docstring)."""
    found: dict[str, tuple[int, str]] = {}  # motion module or block -> (channels, first layer seen)
    for module in sorted(pairs):
        down, up = pairs[module]
        channels = _channels(module, up.shape[0], down.shape[1])
        if channels is None:
            raise SMAInputError(
                f"{source}: layer {module!r} is [{up.shape[0]} x {down.shape[0]}] @ "
                f"[{down.shape[0]} x {down.shape[1]}] = {up.shape[0]} x {down.shape[1]}, which no motion-module layer "
                "of that kind is "
                "(attention/proj: C x C, ff.net.0.proj: 8C x C, ff.net.2: C x 4C).")
        match = _BLOCK.match(module)
        if match is None:
            continue
        block = match["kind"] + (f".{match['index']}" if match["index"] else "")
        mirror = None
        if match["index"] is not None:
            other = "up_blocks" if match["kind"] == "down_blocks" else "down_blocks"
            mirror = f"{other}.{len(SD15_CHANNELS) - 1 - int(match['index'])}"
        for scope in (block, mirror):
            if scope is None:
                continue
            seen = found.get(scope)
            if seen is not None and seen[0] != channels:
                raise SMAInputError(
                    f"{source}: layer {module!r} is {channels} channels wide but {seen[1]!r} is {seen[0]}; "
                    "the widths of one block (and of mirrored down/up blocks) must agree.")
        found.setdefault(block, (channels, module))


def lora_pairs(state: Mapping[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{original-naming module: (down, up)}`` of an ADE-layout state dict."""
    return {parse_lora_key(key).module: (state[key], state[key[: -len("down.weight")] + "up.weight"])
            for key in state if key.endswith(".down.weight")}


def check_lora_fits(pairs: Mapping[str, tuple[torch.Tensor, torch.Tensor]], layers: Mapping[str, tuple[int, int]],
                    source: str, target: str, hint: str = "") -> list[str]:
    """Check every LoRA layer against ``layers`` (``{module: (out, in)}`` of the chosen motion module).

    Returns the LoRA layers ``layers`` lacks (sorted); raises on the first width that differs.

    Raises:
        SMAInputError: a layer whose ``up @ down`` is not ``out x in`` of the same layer in ``target``.
    """
    missing = []
    for module in sorted(pairs):
        down, up = pairs[module]
        shape = layers.get(module)
        if shape is None:
            missing.append(module)
        elif (up.shape[0], down.shape[1]) != tuple(shape):
            raise SMAInputError(
                f"{source}: layer {module!r} is {up.shape[0]} x {down.shape[1]} but {shape[0]} x {shape[1]} in "
                f"{target}{hint or ''}; the LoRA is for a different model size.")
    return missing


def motion_lora_layers(channels: tuple[int, ...] = SD15_CHANNELS, layers_per_block: int = SD15_LAYERS_PER_BLOCK,
                       has_mid_block: bool = True) -> dict[str, tuple[int, int]]:
    """``{module: (out, in)}`` of every LoRA-able layer of a motion module (default: SD1.5, v2 layout with
    the mid block, so a superset of v1/v3/AnimateLCM)."""
    layout = original_motion_layout(channels, layers_per_block, has_mid_block, None)
    return {key[: -len(".weight")]: shape for key, shape in layout.items()
            if key.endswith(".weight") and len(shape) == 2 and MOTION_LORA_MODULE.fullmatch(key[: -len(".weight")])}


def check_sd15_lora(state: Mapping[str, torch.Tensor], source: str) -> None:
    """Refuse an ADE-layout LoRA with a layer that no SD1.5 motion module has, or has with another width.

    For callers that do not hold the motion module yet (ADE applies the LoRA later, and would skip such
    layers one by one, leaving the motion half-applied).
    """
    pairs = lora_pairs(state)
    missing = check_lora_fits(pairs, motion_lora_layers(), source, "SD1.5 motion modules")
    if missing:
        raise SMAInputError(f"{source}: layer {missing[0]!r} is in no SD1.5 motion module "
                            f"({len(missing)} such layer(s)); the LoRA is not for an SD1.5 AnimateDiff model.")
