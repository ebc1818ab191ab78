"""Between a model's motion adapter and an ADE-layout motion LoRA state dict (export and apply).

``export_motion_lora`` then ``apply_motion_lora`` into a fresh adapter then ``export_motion_lora``
gives the identical tensors: export bakes ``alpha / rank`` into ``up``, apply creates adapters with
``alpha = rank`` (scale 1) and copies the tensors unchanged.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from ..errors import SMAInputError
from .adapters import CONTAINER, LoRAAdapter, adapter_names, attach_adapter, lora_layers, refresh_merge
from .convert import to_ade_state_dict
from .keys import ade_lora_key, diffusers_module, original_module, parse_lora_key


def export_motion_lora(model: nn.Module, adapter_name: str = "motion",
                       dtype: torch.dtype = torch.float16) -> dict[str, torch.Tensor]:
    """The ADE motion LoRA of one adapter: ``down [r, in]`` and ``up [out, r] * alpha / r`` per layer.

    The adapter's strength multiplier is not baked in (ADE applies its own strength). Tensors are on
    the CPU in ``dtype`` (fp16 default; fp32 for lossless checkpoints).

    Raises:
        SMAInputError: no such adapter, or it wraps layers outside the motion modules (the spatial
            MotionDirector adapter is never exported).
    """
    out: dict[str, torch.Tensor] = {}
    for name, adapter in lora_layers(model, adapter_name).items():
        try:
            module = original_module(name)
        except SMAInputError as error:
            raise SMAInputError(f"adapter {adapter_name!r} cannot be exported as a motion LoRA: {error}") from error
        with torch.no_grad():
            down = adapter.down.detach().float()
            up = adapter.up.detach().float()
            if adapter.scale != 1.0:
                up = up * adapter.scale
        out[ade_lora_key(module, "down")] = down.to(device="cpu", dtype=dtype).contiguous()
        out[ade_lora_key(module, "up")] = up.to(device="cpu", dtype=dtype).contiguous()
    return out


def _family_hint(missing: list[str], model: nn.Module) -> str:
    """Why LoRA layers may be absent from the model, from their names."""
    model_has_mid = any(".motion_modules." in n and n.startswith("mid_block.") for n, _ in model.named_modules())
    if any(m.startswith("mid_block.") for m in missing) and not model_has_mid:
        return ("the LoRA has mid-block layers (trained on an AnimateDiff v2 motion module) but this model's "
                "motion module has no mid block (v1/v3/AnimateLCM)")
    return "the LoRA was trained on a different motion-module layout or with other targets"


def apply_motion_lora(model: nn.Module, lora: Mapping[str, torch.Tensor], strength: float = 1.0,
                      adapter_name: str = "motion", *, strict: bool = True,
                      dtype: torch.dtype = torch.float32) -> list[str]:
    """Load an ADE-layout motion LoRA into a diffusers motion model as adapter ``adapter_name``.

    A new adapter gets each layer's rank from the file and ``alpha = rank``; an existing adapter of
    that name (resume) must cover the same layers with the same rank, and gets ``up / (alpha / rank)``
    so its output equals the file's. The adapter's multiplier is set to ``strength``.

    Args:
        model: ``UNetMotionModel`` or ``MotionAdapter`` (diffusers naming).
        lora: ADE-layout state dict (``load_motion_lora`` / ``export_motion_lora`` output).
        strict: refuse LoRA layers the model lacks; False skips them and returns them.
        dtype: dtype of newly created adapter weights.

    Returns:
        The original-naming layers of the LoRA that were skipped (always empty with ``strict``).

    Raises:
        SMAInputError: layers missing from the model (how many, which, and the likely family
            mismatch), shape or rank mismatch, or an existing adapter with other layers.
    """
    canonical, _ = to_ade_state_dict(dict(lora), strict=True, source="the motion LoRA")
    modules = dict(model.named_modules())
    pairs = {parse_lora_key(key).module: (canonical[key], canonical[key[: -len("down.weight")] + "up.weight"])
             for key in canonical if key.endswith(".down.weight")}
    missing = sorted(m for m in pairs if not isinstance(modules.get(diffusers_module(m)), nn.Linear))
    if missing and strict:
        raise SMAInputError(
            f"{len(missing)} of the LoRA's {len(pairs)} layers are not in this model ({_family_hint(missing, model)}); "
            f"e.g. {missing[:3]}."
        )
    applied = {m: p for m, p in pairs.items() if m not in missing}
    existing = adapter_name in adapter_names(model)
    if existing:
        have = {original_module(n) for n in lora_layers(model, adapter_name)}
        if have != set(applied) and strict:
            extra, lacking = sorted(set(applied) - have), sorted(have - set(applied))
            raise SMAInputError(
                f"adapter {adapter_name!r} and the LoRA cover different layers: {len(extra)} only in the LoRA "
                f"(e.g. {extra[:2]}), {len(lacking)} only in the adapter (e.g. {lacking[:2]}); "
                "were they trained with different targets?"
            )
    for module, (down, up) in applied.items():
        linear: nn.Linear = modules[diffusers_module(module)]
        rank = down.shape[0]
        if down.shape[1] != linear.in_features or up.shape[0] != linear.out_features:
            raise SMAInputError(
                f"LoRA layer {module!r} is [{up.shape[0]} x {rank}] @ [{rank} x {down.shape[1]}] but the model's layer "
                f"is {linear.out_features} x {linear.in_features}: the LoRA is for a different model size."
            )
        container = getattr(linear, CONTAINER, None)
        adapter = container[adapter_name] if container is not None and adapter_name in container else None
        if adapter is None:
            adapter = LoRAAdapter(linear.in_features, linear.out_features, rank, rank, dtype=dtype,
                                  device=linear.weight.device)
            attach_adapter(linear, adapter_name, adapter)
        elif adapter.rank != rank:
            raise SMAInputError(f"rank mismatch on {module!r}: adapter {adapter_name!r} has rank {adapter.rank}, "
                                f"the LoRA has rank {rank}.")
        with torch.no_grad():
            adapter.down.copy_(down.to(adapter.down.dtype))
            new_up = up.float() / adapter.scale if adapter.scale != 1.0 else up
            adapter.up.copy_(new_up.to(adapter.up.dtype))
        adapter.multiplier = float(strength)
        refresh_merge(linear)
    return missing


