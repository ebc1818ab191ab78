"""``python -m sma merge A.safetensors:0.7 B.safetensors:0.5 --out C.safetensors``: blend motion LoRAs.

Each source is ``PATH[:WEIGHT]`` (weight 1 when left out). Without ``--rank`` the merge is exact (ranks
concatenated); with ``--rank N`` it is an SVD to rank N, and the relative error it costs is printed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..errors import SMAInputError
from ..lora import merge_motion_loras, save_motion_lora

DTYPES = {"fp16": torch.float16, "fp32": torch.float32}


def parse_source(text: str) -> tuple[str, float]:
    """``PATH:WEIGHT`` -> ``(PATH, WEIGHT)``; a path without a numeric ``:WEIGHT`` suffix gets weight 1."""
    path, sep, weight = text.rpartition(":")
    if sep:
        try:
            return path, float(weight)
        except ValueError:
            pass
    if not text:
        raise SMAInputError("an empty source was given; write each one as PATH or PATH:WEIGHT.")
    return text, 1.0


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    sources = [parse_source(text) for text in args.sources]
    for path, _ in sources:
        if Path(path).resolve() == out.resolve():
            raise SMAInputError(f"--out {out} is also a source; write the merge to a new file.")
    merged = merge_motion_loras(sources, rank=args.rank, dtype=DTYPES[args.dtype])
    save_motion_lora(out, merged.state, merged.metadata)
    print(merged.summary(worst=args.worst))
    print(f"wrote {out} ({out.stat().st_size / 2**20:.2f} MiB)")
    return 0
