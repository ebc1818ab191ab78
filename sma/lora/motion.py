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
from .keys import ade_lora_key, diffusers_module, original_module
from .validate import check_lora_fits, check_lora_tensors, lora_pairs


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


def _adapter_of(linear: nn.Linear, adapter_name: str) -> LoRAAdapter | None:
    container = getattr(linear, CONTAINER, None)
    return container[adapter_name] if container is not None and adapter_name in container else None


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

    Every layer is checked before the first one changes: on any error the model is left as it was.

    Raises:
        SMAInputError: layers missing from the model (how many, which, and the likely family
            mismatch), NaN/inf values, shape or rank mismatch, or an existing adapter with other layers.
    """
    source = "the motion LoRA"
    canonical, _ = to_ade_state_dict(dict(lora), strict=True, source=source)
    check_lora_tensors(canonical, source)
    modules = dict(model.named_modules())
    pairs = lora_pairs(canonical)
    linears = {m: modules[name] for m in pairs
               if isinstance(modules.get(name := diffusers_module(m)), nn.Linear)}
    shapes = {m: (linear.out_features, linear.in_features) for m, linear in linears.items()}
    missing = check_lora_fits(pairs, shapes, source, "this model")
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
    adapters = {m: _adapter_of(linears[m], adapter_name) for m in applied}
    for module, (down, _) in applied.items():  # every check before the first layer changes
        if adapters[module] is not None and adapters[module].rank != down.shape[0]:
            raise SMAInputError(f"rank mismatch on {module!r}: adapter {adapter_name!r} has rank "
                                f"{adapters[module].rank}, the LoRA has rank {down.shape[0]}.")
    for module, (down, up) in applied.items():
        linear: nn.Linear = linears[module]
        rank = down.shape[0]
        adapter = adapters[module]
        if adapter is None:
            adapter = LoRAAdapter(linear.in_features, linear.out_features, rank, rank, dtype=dtype,
                                  device=linear.weight.device)
            attach_adapter(linear, adapter_name, adapter)
        with torch.no_grad():
            adapter.down.copy_(down.to(adapter.down.dtype))
            new_up = up.float() / adapter.scale if adapter.scale != 1.0 else up
            adapter.up.copy_(new_up.to(adapter.up.dtype))
        adapter.multiplier = float(strength)
        refresh_merge(linear)
    return missing


