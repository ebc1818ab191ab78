"""Checksums that the pack's safetensors writers store in a file's metadata and its readers verify.

A safetensors file has no checksum of its own, so a flipped byte in the tensor data loads as silently
different weights. Files this pack writes (motion LoRAs, training checkpoints) carry
``sma_checksums``: the CRC-32 of the other metadata, then one CRC-32 per tensor (of its key, dtype, shape
and bytes) in sorted key order (hex, space-separated). Readers check it and name the first tensor that
differs; a file with the pack's markers but no checksum is refused as damaged, other tools' files (no
markers) are read as they are.
"""
from __future__ import annotations

import json
import math
import zlib
from collections.abc import Mapping

import torch

from .errors import SMAInputError

CHECKSUM_KEY = "sma_checksums"


def tensor_crc(key: str, tensor: torch.Tensor) -> int:
    """CRC-32 of a tensor's key, dtype, shape and raw bytes (CPU, C order)."""
    head = f"{key}\0{tensor.dtype}{tuple(tensor.shape)}".encode()
    data = tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy()
    return zlib.crc32(data, zlib.crc32(head))


def _metadata_crc(metadata: Mapping[str, str]) -> int:
    rest = {k: v for k, v in metadata.items() if k != CHECKSUM_KEY}
    return zlib.crc32(json.dumps(rest, sort_keys=True).encode())


def checksums(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> str:
    """The ``sma_checksums`` value for ``tensors`` and the rest of ``metadata``."""
    crcs = [_metadata_crc(metadata), *(tensor_crc(k, tensors[k]) for k in sorted(tensors))]
    return " ".join(f"{c:08x}" for c in crcs)


def with_checksums(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> dict[str, str]:
    """``metadata`` plus its ``sma_checksums`` entry (what a writer passes to ``save_file``)."""
    out = {k: v for k, v in metadata.items() if k != CHECKSUM_KEY}
    out[CHECKSUM_KEY] = checksums(tensors, out)
    return out


def verify_checksums(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str], source: str,
                     required: bool) -> None:
    """Check a file's tensors and metadata against its stored ``sma_checksums``.

    ``required``: the file is one this pack wrote (its own markers are in the metadata), so a missing
    entry means damage too; otherwise a file without the entry is not checked.

    Raises:
        SMAInputError: the entry is missing (when required) or malformed, the metadata or a tensor differs
            from what was written (names the first such tensor), or tensors were added or removed.
    """
    damaged = f"{source} is damaged (it differs from what was written; re-create or re-download it)"
    stored = metadata.get(CHECKSUM_KEY)
    if stored is None:
        if required:
            raise SMAInputError(f"{damaged}: its '{CHECKSUM_KEY}' entry is missing.")
        return
    try:
        expected = [int(part, 16) for part in stored.split(" ")]
    except ValueError:
        raise SMAInputError(f"{damaged}: its '{CHECKSUM_KEY}' entry is not a list of checksums.") from None
    if len(expected) != len(tensors) + 1:
        raise SMAInputError(f"{damaged}: it holds {len(tensors)} tensors, {len(expected) - 1} were written.")
    if expected[0] != _metadata_crc(metadata):
        raise SMAInputError(f"{damaged}: its metadata was changed.")
    for key, crc in zip(sorted(tensors), expected[1:]):
        if tensor_crc(key, tensors[key]) != crc:
            raise SMAInputError(f"{damaged}: tensor {key!r} was changed.")


def peak_magnitudes(tensors: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """``max |x|`` of every non-empty float tensor (NaN where it holds a NaN, inf where an inf), in one
    fused call: far cheaper than one reduction per tensor for files of hundreds of small tensors."""
    keys = [k for k, t in tensors.items() if t.is_floating_point() and t.numel() and not t.is_meta]
    if not keys:
        return {}
    norms = torch._foreach_norm([tensors[k].detach() for k in keys], float("inf"))
    return dict(zip(keys, torch.stack([n.float().cpu() for n in norms]).tolist()))


def first_non_finite(tensors: Mapping[str, torch.Tensor]) -> str | None:
    """The first key (in order) of a float tensor holding NaN or inf, or None."""
    return next((k for k, peak in peak_magnitudes(tensors).items() if not math.isfinite(peak)), None)
