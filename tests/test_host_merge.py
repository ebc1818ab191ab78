"""Merge Motion LoRAs inside the real ComfyUI + AnimateDiff-Evolved (ADE): the merged file patches ADE's
motion module as the two source LoRAs chained with their strengths (``prev_motion_lora``) do.

Full-size v3 layout with random weights; two fp16 LoRAs of "the same motion trained with different
settings" (a shared update plus a part of their own), as users merge them.
"""
from __future__ import annotations

import math
import os

import pytest
import torch
from safetensors import safe_open

from sma.lora import load_motion_lora, save_motion_lora
from sma.lora.keys import MOTION_LORA_MODULE, ade_lora_key

MM_NAME = "sma_test_v3_merge.safetensors"
SOURCES = (("merge_source_a.safetensors", 0.7), ("merge_source_b.safetensors", 0.5))
RANK = 8
MERGED = "merge_result"


def random_lora(shapes: dict[str, tuple[int, int]], seed: int, shared: dict) -> dict[str, torch.Tensor]:
    """fp16 ADE LoRA: per layer a shared update plus 0.3 of one of its own, of rank ``RANK``."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for module, (rows, cols) in shapes.items():
        up = torch.randn(rows, RANK, generator=generator) * 0.05
        down = torch.randn(RANK, cols, generator=generator) / math.sqrt(cols)
        base_up, base_down = shared.setdefault(module, (up, down))
        state[ade_lora_key(module, "down")] = (base_down + 0.3 * down).half()
        state[ade_lora_key(module, "up")] = (base_up + 0.3 * up).half()
    return state


@pytest.fixture(scope="module")
def sources(comfy_host, full_v3_motion_module_file):
    """The v3 module in ``animatediff_models`` and two LoRAs (attention layers) in ``animatediff_motion_lora``."""
    link = comfy_host.models / "animatediff_models" / MM_NAME
    if not link.exists():
        os.symlink(full_v3_motion_module_file, link)
    with safe_open(str(full_v3_motion_module_file), framework="pt") as handle:
        shapes = {key[: -len(".weight")]: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()
                  if key.endswith(".weight") and ".attention_blocks." in key
                  and MOTION_LORA_MODULE.fullmatch(key[: -len(".weight")])}
    assert len(shapes) == 160
    shared: dict = {}
    folder = comfy_host.models / "animatediff_motion_lora"
    for seed, (name, _) in enumerate(SOURCES):
        save_motion_lora(folder / name, random_lora(shapes, seed, shared), {"family": "v3", "rank": RANK})
    yield folder
    for name in [n for n, _ in SOURCES] + [f"{MERGED}_exact.safetensors", f"{MERGED}_r{RANK}.safetensors"]:
        path = comfy_host.folder_paths.get_full_path("animatediff_motion_lora", name)
        if path is not None:
            os.remove(path)


def merged_file(comfy_host, name: str) -> str:
    """Where Merge Motion LoRAs saved ``name`` (ComfyUI's own animatediff_motion_lora folder)."""
    path = comfy_host.folder_paths.get_full_path("animatediff_motion_lora", name)
    assert path is not None, f"{name} was not saved"
    return path


def patched_weights(comfy_host, merge_rank: int | None) -> tuple[dict, dict, str]:
    """ADE's patched motion-module weights (and the unpatched ones) for the two sources chained through Apply
    Motion LoRA (``merge_rank`` None), or for that chain merged by Merge Motion LoRAs; plus the merge summary."""
    (a, weight_a), (b, weight_b) = SOURCES
    prompt = {
        "mm": {"class_type": "ADE_LoadAnimateDiffModel", "inputs": {"model_name": MM_NAME}},
        "a": {"class_type": "SMA_ApplyMotionLoRA", "inputs": {"lora_name": a, "strength": weight_a}},
        "b": {"class_type": "SMA_ApplyMotionLoRA",
              "inputs": {"lora_name": b, "strength": weight_b, "prev_motion_lora": ["a", 0]}},
        "apply": {"class_type": "ADE_ApplyAnimateDiffModelSimple",
                  "inputs": {"motion_model": ["mm", 0], "motion_lora": ["b", 0]}},
        "out": {"class_type": "PreviewAny", "inputs": {"source": ["apply", 0]}},
    }
    if merge_rank is not None:
        name = f"{MERGED}_exact" if merge_rank == 0 else f"{MERGED}_r{merge_rank}"
        prompt["merge"] = {"class_type": "SMA_MergeMotionLoRAs",
                           "inputs": {"motion_lora": ["b", 0], "lora_name": name, "rank": merge_rank}}
        prompt["apply"]["inputs"]["motion_lora"] = ["merge", 0]
    comfy_host.run(prompt)
    (motion_model,) = comfy_host.output("apply").models
    summary = comfy_host.output("merge", 2) if merge_rank is not None else ""
    with torch.inference_mode():
        before = {k: v.clone() for k, v in motion_model.model.state_dict().items()}
        motion_model.patch_model()
        try:
            patched = {k: motion_model.model.state_dict()[k].clone() for k in motion_model.patches}
        finally:
            motion_model.unpatch_model()
    return before, patched, summary


def test_merged_lora_patches_ade_like_the_chained_sources(comfy_host, sources):
    before, chained, _ = patched_weights(comfy_host, None)
    _, merged, summary = patched_weights(comfy_host, 0)
    assert set(chained) == set(merged) and len(merged) == 160
    state, metadata = load_motion_lora(merged_file(comfy_host, f"{MERGED}_exact.safetensors"))
    assert metadata["merge_mode"] == "exact" and metadata["family"] == "v3"
    assert [(s["file"], s["weight"]) for s in metadata["merged_from"]] == list(SOURCES)
    assert all(t.shape[0] == 2 * RANK for k, t in state.items() if k.endswith(".down.weight"))
    worst = 0.0
    for key in merged:
        effect = (chained[key].float() - before[key].float()).abs().max()
        diff = (merged[key].float() - chained[key].float()).abs().max()
        ulp = torch.finfo(torch.float16).eps * chained[key].float().abs().max()  # fp16 rounding of the weights
        assert effect > 100 * ulp, f"{key}: the LoRAs barely change the weight, the check would be empty"
        assert diff <= 2 * ulp, (key, float(diff), float(ulp))
        worst = max(worst, float(diff / effect))
    print(f"\nexact merge vs ADE chain: worst |merged - chained| = {worst:.2e} of the LoRA effect; {summary}")


def test_compressed_merge_reports_its_error_and_stays_close(comfy_host, sources):
    before, chained, _ = patched_weights(comfy_host, None)
    _, merged, summary = patched_weights(comfy_host, RANK)
    metadata = load_motion_lora(merged_file(comfy_host, f"{MERGED}_r{RANK}.safetensors"))[1]
    error = metadata["merge_error"]
    assert f"{error:.3e} overall" in summary
    residual = sum(float((merged[k].float() - chained[k].float()).norm()) ** 2 for k in merged)
    effect = sum(float((chained[k].float() - before[k].float()).norm()) ** 2 for k in merged)
    measured = math.sqrt(residual / effect)
    # ADE's patched weights show the reported error (plus fp16 rounding of the weights)
    assert 0.005 < error < 0.3 and measured == pytest.approx(error, rel=0.1)
    print(f"\ncompressed 2 x rank {RANK} -> rank {RANK}: reported error {error:.3e}, in ADE's weights {measured:.3e}")
