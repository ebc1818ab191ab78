"""``python -m sma inspect FILE``: what a motion LoRA file holds.

Reads any layout :func:`sma.lora.load_motion_lora` knows (this pack's, ADE's, MotionDirector's,
diffusers/peft, kohya); prints the file's metadata, its motion-LoRA layers (pairs) in the canonical ADE
layout, ranks, dtypes, which motion modules and layer kinds are covered, and the parameter count.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter, defaultdict
from pathlib import Path

import torch

from ..lora import read_lora_file
from ..lora.convert import to_ade_state_dict
from ..lora.files import FORMAT, FORMAT_KEY, VERSION_KEY, decode_metadata
from ..lora.keys import parse_lora_key

MAX_VALUE_CHARS = 400
_MODULE = re.compile(r"^(?P<block>(?:down|up)_blocks\.\d+|mid_block)\.motion_modules\.(?P<index>\d+)\."
                     r"temporal_transformer\.(?P<rest>.+)$")
_ATTENTION = re.compile(r"transformer_blocks\.\d+\.attention_blocks\.(?P<n>\d+)\.(?P<leaf>to_q|to_k|to_v|to_out)")
_BLOCK_ORDER = {"down": 0, "mid": 1, "up": 2}

KEY_COLUMN = 15
"""Metadata values line up after keys of up to this many characters; longer keys just push theirs right."""


def layer_kind(module: str) -> str:
    """Short name of a LoRA'd layer: ``attn1.to_q`` .. ``attn2.to_out``, ``ff.in``/``ff.out``, ``proj_in``/``proj_out``."""
    match = _MODULE.match(module)
    rest = match["rest"] if match else module
    attention = _ATTENTION.search(rest)
    if attention:
        return f"attn{int(attention['n']) + 1}.{attention['leaf']}"
    if rest.endswith("ff.net.0.proj"):
        return "ff.in"
    if rest.endswith("ff.net.2"):
        return "ff.out"
    return rest.rsplit(".", 1)[-1]


_LEAF_ORDER = ("q", "k", "v", "out", "in")


def kinds_text(kinds: Counter) -> str:
    """``attn1.to_q, attn1.to_k, ..., ff.in`` -> ``attn1(q,k,v,out) ... ff(in,out)``."""
    grouped: dict[str, list[str]] = defaultdict(list)
    for kind in kinds:
        head, _, leaf = kind.partition(".")
        grouped[head].append(leaf.removeprefix("to_"))
    order = {leaf: i for i, leaf in enumerate(_LEAF_ORDER)}
    return " ".join(f"{head}({','.join(sorted(leaves, key=lambda x: order.get(x, 9)))})" if leaves != [""] else head
                    for head, leaves in sorted(grouped.items()))


def _block_key(block: str) -> tuple[int, int]:
    kind = block.split("_", 1)[0]
    index = int(block.rsplit(".", 1)[-1]) if "." in block else 0
    return _BLOCK_ORDER.get(kind, 3), index


def coverage(modules: list[str]) -> dict[str, dict[str, object]]:
    """Per block (``down_blocks.0`` .. ``mid_block`` .. ``up_blocks.3``): motion-module indices, layer kinds, count."""
    blocks: dict[str, dict[str, object]] = defaultdict(lambda: {"modules": set(), "kinds": Counter(), "layers": 0})
    for module in modules:
        match = _MODULE.match(module)
        entry = blocks[match["block"] if match else "other"]
        if match:
            entry["modules"].add(int(match["index"]))  # type: ignore[union-attr]
        entry["kinds"][layer_kind(module)] += 1  # type: ignore[index]
        entry["layers"] += 1  # type: ignore[operator]
    return {name: blocks[name] for name in sorted(blocks, key=_block_key)}


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _value_text(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    if len(text) > MAX_VALUE_CHARS:
        return f"{text[:MAX_VALUE_CHARS]}... ({len(text)} characters)"
    return text


def describe(path: str | Path) -> list[str]:
    """The lines ``inspect`` prints for a LoRA file.

    Raises:
        SMAInputError: unreadable file or not a motion LoRA (the message says what it is instead).
    """
    path = Path(path)
    raw, raw_metadata = read_lora_file(path)
    state, dropped = to_ade_state_dict(raw, raw_metadata, strict=False, source=path.name)
    metadata = decode_metadata(raw_metadata)
    parsed = {key: parse_lora_key(key) for key in raw}
    downs = {p.module: raw_down for key, raw_down in state.items() if (p := parse_lora_key(key)).role == "down"}
    ranks = Counter(int(t.shape[0]) for t in downs.values())
    dtypes = Counter(_dtype_name(t.dtype) for t in raw.values())
    alphas = sum(1 for p in parsed.values() if p is not None and p.role == "alpha")
    written_here = raw_metadata.get(FORMAT_KEY) == FORMAT

    lines = [f"file: {path} ({path.stat().st_size / 2**20:.2f} MiB, {len(raw)} tensors)"]
    lines.append("layout: " + (f"this pack's ADE motion LoRA ({FORMAT}, sma {raw_metadata.get(VERSION_KEY, '?')})"
                               if written_here else "read as an ADE motion LoRA (converted from the file's layout)"))
    lines.append(f"layers: {len(downs)} LoRA pairs (down/up)")
    lines.append("rank: " + ", ".join(f"{r} ({n} layers)" if len(ranks) > 1 else str(r) for r, n in sorted(ranks.items())))
    lines.append("dtypes: " + ", ".join(f"{d} ({n} tensors)" for d, n in sorted(dtypes.items())))
    if alphas:
        lines.append(f"alpha: {alphas} alpha tensors, folded into 'up' (alpha / rank) when loaded")
    lines.append(f"parameters: {sum(t.numel() for t in state.values()):,}")
    if dropped:
        lines.append(f"ignored: {len(dropped)} tensors that are not motion-module LoRA pairs (e.g. {dropped[0]!r})")
    lines.append("blocks covered:")
    for block, entry in coverage(sorted(downs)).items():
        modules = sorted(entry["modules"])  # type: ignore[arg-type]
        kinds = kinds_text(entry["kinds"])  # type: ignore[arg-type]
        lines.append(f"  {block}: motion modules {modules}, {entry['layers']} layers: {kinds}")
    shown = {k: v for k, v in metadata.items() if k not in (FORMAT_KEY, VERSION_KEY)}
    lines.append("metadata:" + ("" if shown else " (none)"))
    width = min(max((len(k) for k in shown), default=0), KEY_COLUMN)
    lines += [f"  {key:<{width}}  {_value_text(shown[key])}" for key in sorted(shown)]
    return lines


def run(args: argparse.Namespace) -> int:
    print("\n".join(describe(args.file)))
    return 0
