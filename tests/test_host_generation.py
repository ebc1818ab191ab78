"""Real generation in the host: random-weight SD1.5 + AnimateDiff v3 through ComfyUI's and ADE's own nodes.

The checkpoint and motion module are full size (real key names and shapes), so ComfyUI's checkpoint
detection and ADE's motion-model detection treat them like the released files. The images are
meaningless, but the whole path (load, CLIP, motion-model injection, evolved sampling, VAE decode) runs.
"""
from __future__ import annotations

import logging

import torch
from safetensors import safe_open

import host_graphs as g
from conftest import SD15_CHECKPOINT_NAME
from host_models import CLIP_PREFIX, SD15_UNET_CONFIG, UNET_PREFIX, VAE_PREFIX, sd15_checkpoint_shapes

FRAMES, SIZE = 4, 64
# parameter counts of the released SD1.5 components (UNet, KL-f8 VAE, CLIP ViT-L/14 text model)
PUBLISHED_PARAMETER_COUNTS = {UNET_PREFIX: 859_520_964, VAE_PREFIX: 83_653_863, CLIP_PREFIX: 123_060_480}
# what a load that does not match the model's keys logs (comfy.sd / comfy.model_base, at WARNING)
KEY_MISMATCH_WORDS = ("missing", "unexpected", "leftover", "not a checkpoint", "no clip", "no vae")


def test_random_checkpoint_is_detected_as_sd15(comfy_host, full_sd15_checkpoint_file):
    import comfy.model_detection
    import comfy.supported_models

    with safe_open(str(full_sd15_checkpoint_file), "pt") as f:
        shapes = {k: torch.Size(f.get_slice(k).get_shape()) for k in f.keys()}
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}
    position_ids = "cond_stage_model.transformer.text_model.embeddings.position_ids"
    assert shapes.pop(position_ids) == (1, 77)
    assert shapes == sd15_checkpoint_shapes()
    assert dtypes == {"F16", "I64"}
    for prefix, count in PUBLISHED_PARAMETER_COUNTS.items():
        assert sum(s.numel() for k, s in shapes.items() if k.startswith(prefix)) == count, prefix

    meta = {k: torch.empty(s, device="meta") for k, s in shapes.items()}
    assert comfy.model_detection.unet_prefix_from_state_dict(meta) == UNET_PREFIX
    detected = comfy.model_detection.detect_unet_config(meta, UNET_PREFIX)
    assert {k: v for k, v in detected.items() if k != "dtype"} == {k: v for k, v in SD15_UNET_CONFIG.items() if k != "num_heads"}
    assert type(comfy.model_detection.model_config_from_unet(meta, UNET_PREFIX)) is comfy.supported_models.SD15


def _cached_nodes(comfy_host) -> set[str]:
    """Node ids the last run took from the cache instead of executing."""
    return {n for event, data in comfy_host.executor.status_messages if event == "execution_cached" for n in data["nodes"]}


def _frames(comfy_host, prompt: dict) -> torch.Tensor:
    outputs = comfy_host.run(prompt)
    assert len(outputs[g.OUTPUT]["images"]) == FRAMES
    return comfy_host.output(g.DECODE).clone()


def test_animatediff_graph_generates_deterministic_frames(comfy_host, full_sd15_checkpoint_file,
                                                          full_v3_motion_module_in_host, caplog):
    comfy_host.executor.reset()  # load both models in this test, so their load messages are seen here
    prompt = g.animatediff_prompt(SD15_CHECKPOINT_NAME, full_v3_motion_module_in_host,
                                  width=SIZE, height=SIZE, frames=FRAMES, seed=7)
    with caplog.at_level(logging.WARNING):
        first = _frames(comfy_host, prompt)
    assert {g.CHECKPOINT, g.MOTION_MODEL}.isdisjoint(_cached_nodes(comfy_host))
    mismatches = [r.getMessage() for r in caplog.records
                  if r.levelno >= logging.WARNING and any(w in r.getMessage().lower() for w in KEY_MISMATCH_WORDS)]
    assert not mismatches

    assert first.shape == (FRAMES, SIZE, SIZE, 3) and first.dtype == torch.float32
    assert torch.isfinite(first).all()
    assert first.min() >= 0 and first.max() <= 1
    assert first.std() > 0.05
    assert all(not torch.equal(first[0], first[i]) for i in range(1, FRAMES))

    prompt[g.SAMPLER]["inputs"]["seed"] = 8
    other_seed = _frames(comfy_host, prompt)
    assert (other_seed - first).abs().mean() > 0.01

    prompt[g.SAMPLER]["inputs"]["seed"] = 7  # the sampler ran with seed 8 last, so it executes again
    again = _frames(comfy_host, prompt)
    assert g.SAMPLER not in _cached_nodes(comfy_host)
    assert torch.equal(again, first)

    no_motion = _frames(comfy_host, g.animatediff_prompt(SD15_CHECKPOINT_NAME, None, width=SIZE, height=SIZE,
                                                         frames=FRAMES, seed=7))
    assert (no_motion - first).abs().mean() > 0.01  # the motion module changed the frames


def _undeclared_inputs(comfy_host, prompt: dict) -> list[tuple[str, str]]:
    """(node id, input name) pairs of ``prompt`` that the node's class does not declare."""
    undeclared = []
    for node_id, node in prompt.items():
        declared = comfy_host.nodes.NODE_CLASS_MAPPINGS[node["class_type"]].INPUT_TYPES()
        names = set(declared.get("required", {})) | set(declared.get("optional", {}))
        undeclared += [(node_id, name) for name in node["inputs"] if name not in names]
    return undeclared


def test_motion_lora_chain_matches_ade_inputs(comfy_host, full_sd15_checkpoint_file, full_v3_motion_module_in_host):
    """The LoRA chain's node and input names are what ADE declares (validation only; nothing is loaded)."""
    folder = comfy_host.models / "animatediff_motion_lora"
    names = ["chain_a.safetensors", "chain_b.safetensors"]
    try:
        for name in names:
            (folder / name).write_bytes(b"")  # listed by name; validation never opens it
        prompt = g.animatediff_prompt(SD15_CHECKPOINT_NAME, full_v3_motion_module_in_host,
                                      motion_loras=[(names[0], 0.5), (names[1], 1.0)])
        valid, error, outputs, node_errors = comfy_host.validate(prompt)
        assert valid, (error, node_errors)
        assert outputs == [g.OUTPUT]
        assert _undeclared_inputs(comfy_host, prompt) == []  # validation ignores unknown input names
        assert prompt[g.MOTION_LORA.format(1)]["inputs"]["prev_motion_lora"] == [g.MOTION_LORA.format(0), 0]
        assert prompt[g.APPLY_MOTION_MODEL]["inputs"]["motion_lora"] == [g.MOTION_LORA.format(1), 0]

        prompt[g.MOTION_LORA.format(0)]["inputs"]["name"] = "not_there.safetensors"
        valid, _, _, node_errors = comfy_host.validate(prompt)
        assert not valid and g.MOTION_LORA.format(0) in node_errors
    finally:
        for name in names:
            (folder / name).unlink(missing_ok=True)
