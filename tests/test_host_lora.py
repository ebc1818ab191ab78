"""Proof against the real AnimateDiff-Evolved (ADE): a motion LoRA exported by this pack is applied by ADE
exactly, and the diffusers motion module with the LoRA gives ADE's output.

Full-size v3 layout (random weights, fp16 file). ADE loads the LoRA through its own nodes
(``ADE_AnimateDiffLoRALoader`` -> ``ADE_ApplyAnimateDiffModelSimple``), which turns each pair into a
ModelPatcher weight patch; ``patch_model()`` is what ADE's sampling does before running the model.
"""
from __future__ import annotations

import os

import pytest
import torch
from accelerate import init_empty_weights
from diffusers import MotionAdapter
from safetensors.torch import load_file

from sma.lora import (
    LoRAConfig,
    add_motion_lora,
    apply_motion_lora,
    export_motion_lora,
    load_motion_lora,
    lora_layers,
    merged_lora,
    parse_lora_key,
    remove_lora,
    save_motion_lora,
    set_lora_scale,
)
from sma.models.config import motion_adapter_config
from sma.models.files import load_motion_module
from sma.models.keys import motion_state_dict_to_diffusers
from sma.models.norms import use_ade_group_norms

MM_NAME = "sma_test_v3_full.safetensors"
LORA_NAME = "sma_test_v3_full_lora.safetensors"
RANK, ALPHA, FRAMES = 8, 16.0, 16
BLOCKS = ("down_blocks.0.motion_modules.0", "up_blocks.0.motion_modules.0")  # 320 and 1280 channels


@pytest.fixture(scope="module")
def lora_setup(comfy_host, full_v3_motion_module_file):
    """(diffusers MotionAdapter fp32 with a random 'motion' LoRA, the saved LoRA tensors).

    The motion module is placed in ADE's ``animatediff_models``, the pack-exported LoRA in
    ``animatediff_motion_lora``.
    """
    models = comfy_host.models
    link = models / "animatediff_models" / MM_NAME
    if not link.exists():
        os.symlink(full_v3_motion_module_file, link)
    motion, info = load_motion_module(full_v3_motion_module_file, dtype=torch.float32)
    assert info.family == "v3"
    with init_empty_weights():
        adapter = MotionAdapter.from_config(motion_adapter_config(
            "v3", "full", pe_length=info.pe_length, has_mid_block=info.has_mid_block))
    adapter.load_state_dict(motion_state_dict_to_diffusers(motion), strict=True, assign=True)
    del motion
    use_ade_group_norms(adapter, "v3")  # ADE normalises each frame
    adapter.eval().requires_grad_(False)
    names = add_motion_lora(adapter, LoRAConfig(rank=RANK, alpha=ALPHA, targets=("attention", "ff", "proj")))
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for layer in lora_layers(adapter, "motion").values():  # non-zero down (init) and up
            layer.up.copy_(torch.randn(layer.up.shape, generator=generator) * 0.3)
    path = save_motion_lora(models / "animatediff_motion_lora" / LORA_NAME, export_motion_lora(adapter),
                            {"family": "v3", "rank": RANK, "alpha": ALPHA})
    saved = load_file(str(path))
    assert len(names) == 240 and len(saved) == 480
    # the diffusers side uses the file's (fp16-rounded) values too: load it back into a fresh adapter
    remove_lora(adapter, "motion")
    assert apply_motion_lora(adapter, load_motion_lora(path)[0]) == []
    return adapter, saved


def ade_motion_model(h, strength: float):
    """ADE's MotionModelPatcher after its own loader nodes applied the LoRA at ``strength``."""
    h.run({
        "1": {"class_type": "ADE_LoadAnimateDiffModel", "inputs": {"model_name": MM_NAME}},
        "2": {"class_type": "ADE_AnimateDiffLoRALoader", "inputs": {"name": LORA_NAME, "strength": strength}},
        "3": {"class_type": "ADE_ApplyAnimateDiffModelSimple", "inputs": {"motion_model": ["1", 0], "motion_lora": ["2", 0]}},
        "4": {"class_type": "PreviewAny", "inputs": {"source": ["3", 0]}},
    })
    (motion_model,) = h.output("3").models
    return motion_model


@pytest.mark.parametrize("strength", [0.5])  # a strength other than 1, so the scaling is checked too
def test_ade_patches_every_layer_and_matches_the_diffusers_motion_module(comfy_host, lora_setup, strength):
    adapter, saved = lora_setup
    motion_model = ade_motion_model(comfy_host, strength)
    stems = {parse_lora_key(k).module: k[: -len(".down.weight")] for k in saved if k.endswith(".down.weight")}
    layers = set(stems)
    assert set(motion_model.patches) == {m + ".weight" for m in layers}  # all 240 pairs, nothing skipped
    with torch.inference_mode():
        before = {k: v.clone() for k, v in motion_model.model.state_dict().items()}
        motion_model.patch_model()
        try:
            patched = motion_model.model.state_dict()
            dtype = patched[next(iter(motion_model.patches))].dtype
            for module in sorted(layers):
                down = saved[f"{stems[module]}.down.weight"].float()
                up = saved[f"{stems[module]}.up.weight"].float()
                key = module + ".weight"
                expected = (before[key].float() + strength * (up @ down)).to(dtype)
                delta = (patched[key].float() - before[key].float()).abs().max()
                assert delta > 1e-3, f"{key}: ADE applied no change"
                assert torch.equal(patched[key], expected), (key, (patched[key] - expected).abs().max())
            unchanged = [k for k in before if k not in motion_model.patches]
            assert all(torch.equal(patched[k], before[k]) for k in unchanged)
            print(f"\nADE patched {len(layers)} layers at strength {strength} ({dtype}), all equal to W + s * up @ down")
            _compare_outputs(adapter, motion_model.model, strength)
        finally:
            motion_model.unpatch_model()
        assert all(torch.equal(v, before[k]) for k, v in motion_model.model.state_dict().items())


def _compare_outputs(adapter: MotionAdapter, ade_model, strength: float) -> None:
    """Same random ``[B*F, C, H, W]`` into one diffusers and one ADE motion module: equal within fp32 noise."""
    ade_model.set_video_length(FRAMES, FRAMES)
    set_lora_scale(adapter, "motion", strength)
    for block in BLOCKS:
        ade_block = ade_model.get_submodule(block)
        diffusers_block = adapter.get_submodule(block)
        channels = diffusers_block.proj_in.in_features
        x = torch.randn(2 * FRAMES, channels, 8, 8, generator=torch.Generator().manual_seed(3))
        ade_out = ade_block(x.clone(), transformer_options={}).float()
        active = diffusers_block(x.clone(), num_frames=FRAMES)
        with merged_lora(adapter, "motion"):
            merged = diffusers_block(x.clone(), num_frames=FRAMES)
        set_lora_scale(adapter, "motion", 0.0)
        without = diffusers_block(x.clone(), num_frames=FRAMES)
        set_lora_scale(adapter, "motion", strength)
        diff_active = (active - ade_out).abs().max().item()
        diff_merged = (merged - ade_out).abs().max().item()
        effect = (without - ade_out).abs().max().item()
        print(f"{block} strength {strength}: max |diffusers - ADE| active {diff_active:.2e}, merged {diff_merged:.2e}; "
              f"LoRA effect {effect:.3f}; output scale {ade_out.abs().max().item():.2f}")
        tolerance = 1e-5 * ade_out.abs().max().item()  # fp32 rounding, relative to the output scale
        assert effect > 1000 * tolerance  # the LoRA matters, so the equality below is a real check
        assert diff_active < tolerance and diff_merged < tolerance
