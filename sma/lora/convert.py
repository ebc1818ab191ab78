"""Turn the tensors of a motion LoRA file of any known layout into the canonical ADE layout.

Canonical = what ``export_motion_lora`` writes: ADE keys (``sma.lora.keys.ade_lora_key``), one
``down [r, in]`` / ``up [out, r]`` pair per layer, the ``alpha / r`` scale baked into ``up``, no alpha keys.
"""
from __future__ import annotations

import json
import math
from collections import Counter

import torch

from ..errors import SMAInputError, key_examples
from .keys import LoRAKey, ade_lora_key, parse_lora_key

DIFFUSERS_METADATA_KEY = "lora_adapter_metadata"  # diffusers' save_lora_weights (peft config per component)


def _prefixes(keys: list[str]) -> str:
    counts = Counter(k.split(".", 1)[0] if "." in k else k[:24] for k in keys)
    return ", ".join(f"{p!r} ({n})" for p, n in counts.most_common(6))


def describe_non_lora(keys: list[str]) -> str | None:
    """A sentence saying what a file without any LoRA pair is, when its keys tell; else None."""
    if any(".motion_modules." in k or k.startswith(("down_blocks.", "mid_block.", "up_blocks.")) for k in keys) \
            and not any("lora" in k.lower() for k in keys):
        return ("this is an AnimateDiff motion module (full weights), not a motion LoRA; put it in "
                "'animatediff_models' and pick it as the motion model")
    if any(k.startswith(("model.diffusion_model.", "first_stage_model.", "cond_stage_model.")) for k in keys):
        return "this is a Stable Diffusion checkpoint, not a motion LoRA"
    if any("temp_attentions" in k or "transformer_in" in k for k in keys):
        return ("this is a ModelScope/ZeroScope temporal LoRA (showlab/MotionDirector layout); AnimateDiff "
                "motion modules have a different architecture, so it cannot be applied")
    return None


def diffusers_scale(metadata: dict[str, str] | None) -> float | None:
    """``lora_alpha / r`` from diffusers' ``lora_adapter_metadata`` (peft config), or None if absent.

    Raises:
        SMAInputError: per-layer rank/alpha patterns are set (not supported).
    """
    raw = (metadata or {}).get(DIFFUSERS_METADATA_KEY)
    if not raw:
        return None
    config = json.loads(raw)
    alpha = next((v for k, v in config.items() if k.split(".")[-1] == "lora_alpha"), None)
    rank = next((v for k, v in config.items() if k.split(".")[-1] == "r"), None)
    patterns = [k for k, v in config.items() if k.split(".")[-1] in ("rank_pattern", "alpha_pattern") and v]
    if patterns:
        raise SMAInputError(f"the LoRA's peft config sets per-layer ranks/alphas ({patterns}); not supported.")
    if alpha is None or rank is None:
        return None
    rslora = any(v for k, v in config.items() if k.split(".")[-1] == "use_rslora")
    return float(alpha) / (math.sqrt(rank) if rslora else float(rank))


def to_ade_state_dict(raw: dict[str, torch.Tensor], metadata: dict[str, str] | None = None, *,
                      strict: bool = True, source: str = "the LoRA file") -> tuple[dict[str, torch.Tensor], list[str]]:
    """Canonical ADE-layout LoRA from the tensors of a file of a known layout.

    Args:
        raw: the file's tensors by key.
        metadata: the file's safetensors metadata (used for diffusers/peft ``lora_alpha``).
        strict: refuse keys that are not motion-module LoRA pairs; False drops them (returned).
        source: how to name the file in messages.

    Returns:
        (state dict, dropped keys). ``up`` tensors carry the baked ``alpha / r``; dtypes are kept.

    Raises:
        SMAInputError: no motion-module LoRA pair at all (the message lists the prefixes seen and
            says what the file looks like), unrecognised keys with ``strict``, a layer without its
            partner, a non-2-D tensor, ``down``/``up`` ranks that disagree.
    """
    keys = list(raw)
    parsed: dict[str, LoRAKey | None] = {k: parse_lora_key(k) for k in keys}
    unknown = [k for k, p in parsed.items() if p is None]
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for key, p in parsed.items():
        if p is None:
            continue
        if p.role in groups.setdefault(p.module, {}):
            raise SMAInputError(f"{source} holds two {p.role} tensors for layer {p.module!r} (e.g. {key!r}).")
        groups[p.module][p.role] = raw[key]
    if not any({"down", "up"} <= set(g) for g in groups.values()):
        what = describe_non_lora(keys)
        raise SMAInputError(
            f"{source} holds no AnimateDiff motion-module LoRA pair ({len(keys)} keys; prefixes seen: "
            f"{_prefixes(keys) or 'none'}; e.g. {key_examples(keys)})"
            + (f": {what}." if what else ". Known layouts: ADE/AnimateDiff "
               "('...attention_blocks.0.processor.to_q_lora.down.weight'), MotionDirector, diffusers/peft "
               "('...attn1.to_q.lora_A.weight'), kohya ('lora_unet_..._to_q.lora_down.weight').")
        )
    if unknown and strict:
        raise SMAInputError(
            f"{source} has {len(unknown)} key(s) that are not motion-module LoRA pairs (e.g. "
            f"{key_examples(unknown)}); prefixes: {_prefixes(unknown)}. Only motion-module layers can be "
            "loaded; spatial (image) LoRA layers belong in a normal LoRA loader."
        )
    scale = diffusers_scale(metadata)
    out: dict[str, torch.Tensor] = {}
    for module, tensors in groups.items():
        missing = {"down", "up"} - set(tensors)
        if missing:
            raise SMAInputError(f"{source}: layer {module!r} has no {'/'.join(sorted(missing))} tensor.")
        down, up = tensors["down"], tensors["up"]
        if down.ndim != 2 or up.ndim != 2:
            raise SMAInputError(
                f"{source}: layer {module!r} has a {down.ndim}-D down / {up.ndim}-D up tensor "
                f"({tuple(down.shape)}, {tuple(up.shape)}); motion LoRA layers are linear: 2-D only."
            )
        rank = down.shape[0]
        if up.shape[1] != rank:
            raise SMAInputError(
                f"{source}: rank mismatch in {module!r}: down {tuple(down.shape)} has rank {rank}, "
                f"up {tuple(up.shape)} has rank {up.shape[1]}."
            )
        factor = scale
        if "alpha" in tensors:
            factor = float(tensors["alpha"].float().reshape(-1)[0]) / rank
        if factor is not None and factor != 1.0:
            up = (up.float() * factor).to(up.dtype)
        out[ade_lora_key(module, "down")] = down
        out[ade_lora_key(module, "up")] = up
    return out, unknown
