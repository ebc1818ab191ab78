"""The whole graph inside the real ComfyUI + AnimateDiff-Evolved: reference video -> train -> LoRA file ->
apply in an ADE Gen2 graph -> sample -> decode; plus cancel, caching and bad inputs.

Models are random-weight full-size SD1.5 / v3 files (made once per run by conftest fixtures); frames and
sizes are tiny so that training runs a few steps on the CPU.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from host_graphs import APPLY_MOTION_MODEL, DECODE, MOTION_LORA, SAMPLER, animatediff_prompt, link
from sma.lora import load_motion_lora
from synthetic_clips import moving_shapes_clip
from sma.video import write_video

FRAMES, SIZE = 4, 64
LORA_NAME = "host_test_motion"
TRAIN = "train"
TRAIN_TEXT = "shapes moving"


@pytest.fixture(scope="module")
def host(comfy_host, full_sd15_checkpoint_file, full_v3_motion_module_in_host):
    """The host with the models placed, a reference clip in the input folder, and a hook that records the
    progress bar (and can press Cancel at a given step)."""
    import comfy.model_management
    import comfy.utils

    clip = moving_shapes_clip(frames=FRAMES, height=SIZE, width=SIZE, seed=3)
    input_dir = Path(comfy_host.folder_paths.get_input_directory())
    write_video(input_dir / "reference.mp4", clip.frames, fps=8)
    progress: dict = {"updates": [], "cancel_at": None}

    def hook(value, total, preview, prompt_id=None, node_id=None):  # what main.py installs, recording
        comfy.model_management.throw_exception_if_processing_interrupted()
        progress["updates"].append((value, total, preview))
        if progress["cancel_at"] is not None and value >= progress["cancel_at"]:
            comfy.model_management.interrupt_current_processing(True)

    comfy.utils.set_progress_bar_global_hook(hook)
    lora_dir = Path(comfy_host.folder_paths.models_dir) / "animatediff_motion_lora"
    made = set()
    yield comfy_host, progress, lora_dir, made, full_v3_motion_module_in_host
    comfy.utils.set_progress_bar_global_hook(None)
    for name in made:
        (lora_dir / name).unlink(missing_ok=True)
    shutil.rmtree(Path(comfy_host.folder_paths.get_output_directory()) / "sma_checkpoints", ignore_errors=True)


def train_prompt(motion_model: str, lora_name: str = LORA_NAME, steps: int = 2, video: str = "reference.mp4",
                 **settings) -> dict:
    """Load Reference Video -> Train Motion LoRA (SMA) with the checkpoint's MODEL / VAE and a prompt."""
    train_inputs = {
        "model": link("checkpoint", 0), "vae": link("checkpoint", 2), "positive": link("positive"),
        "frames": link("video"), "motion_model": motion_model, "lora_name": lora_name, "steps": steps,
        "learning_rate": 5e-3, "spatial_learning_rate": 1e-3, "rank": 4, "sma_mode": "plus", "lambda_global": 0.4,
        "lambda_local": 0.2, "wavelet_levels": 0, "spatial_path": True, "seed": 0, "checkpoint_every": 0,
        "preview_every": 1, "resume": False, **settings}
    return {
        "checkpoint": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15_random.safetensors"}},
        "positive": {"class_type": "CLIPTextEncode", "inputs": {"clip": link("checkpoint", 1), "text": TRAIN_TEXT}},
        "video": {"class_type": "SMA_LoadReferenceVideo", "inputs": {
            "video": video, "frame_load_cap": FRAMES, "skip_first_frames": 0, "select_every_nth": 1,
            "force_rate": 0.0, "width": SIZE, "height": SIZE}},
        TRAIN: {"class_type": "SMA_TrainMotionLoRA", "inputs": train_inputs},
        "curve": {"class_type": "PreviewImage", "inputs": {"images": link(TRAIN, 1)}},
    }


def cached_nodes(comfy_host) -> set[str]:
    """Node ids the last run took from ComfyUI's cache instead of executing them."""
    cached = set()
    for event, data in comfy_host.executor.status_messages:
        if event == "execution_cached":
            cached.update(data["nodes"])
    return cached


@pytest.fixture(scope="module")
def trained(host):
    comfy_host, progress, lora_dir, made, motion = host
    comfy_host.executor.reset()
    progress["updates"].clear()
    made.add(f"{LORA_NAME}.safetensors")
    comfy_host.run(train_prompt(motion))
    return comfy_host.output(TRAIN, 0), list(progress["updates"])


def test_training_writes_an_ade_lora_into_the_motion_lora_folder(host, trained):
    comfy_host, _, lora_dir, _, motion = host
    name, updates = trained
    assert name == f"{LORA_NAME}.safetensors"
    path = lora_dir / name
    state, metadata = load_motion_lora(path)
    assert len(state) == 2 * 160  # v3: every motion-module attention projection (q, k, v, out)
    assert metadata["steps_done"] == 2 and metadata["family"] == "v3" and metadata["motion_module"] == motion
    assert all(t.ndim == 2 and t.dtype == torch.float16 for t in state.values())
    assert any(t.abs().max() > 0 for k, t in state.items() if k.endswith(".up.weight"))
    assert name in comfy_host.folder_paths.get_filename_list("animatediff_motion_lora")
    # the progress bar reached 2/2 and carried a live preview image on each preview step
    assert (2, 2) in [(v, t) for v, t, _ in updates]
    previews = [p for _, _, p in updates if p is not None]
    assert len(previews) == 2 and previews[0][0] == "JPEG" and previews[0][1].size[0] > 0
    curve, preview = comfy_host.output(TRAIN, 1), comfy_host.output(TRAIN, 2)
    assert curve.ndim == 4 and curve.shape[-1] == 3 and float(curve.std()) > 0.01
    assert preview.shape == (FRAMES, SIZE, SIZE, 3)


def test_unchanged_graph_is_not_retrained_and_a_changed_setting_is(host, trained):
    comfy_host, progress, lora_dir, _, motion = host
    comfy_host.run(train_prompt(motion))
    assert TRAIN in cached_nodes(comfy_host)
    before = (lora_dir / f"{LORA_NAME}.safetensors").stat().st_mtime_ns
    comfy_host.run(train_prompt(motion, steps=1, spatial_path=False))  # any changed setting retrains
    assert TRAIN not in cached_nodes(comfy_host)
    assert (lora_dir / f"{LORA_NAME}.safetensors").stat().st_mtime_ns > before
    assert load_motion_lora(lora_dir / f"{LORA_NAME}.safetensors")[1]["steps_done"] == 1


def apply_prompt(motion: str, strength: float | None, seed: int = 5, loader: str = "SMA_ApplyMotionLoRA") -> dict:
    """ADE Gen2 text-to-video; with ``strength``, the trained LoRA enters through ``loader``."""
    loras = [] if strength is None else [(f"{LORA_NAME}.safetensors", strength)]
    prompt = animatediff_prompt("sd15_random.safetensors", motion, motion_loras=loras, seed=seed,
                                width=SIZE, height=SIZE, frames=FRAMES)
    if loras and loader == "SMA_ApplyMotionLoRA":
        node = prompt[MOTION_LORA.format(0)]
        node["class_type"] = loader
        node["inputs"]["lora_name"] = node["inputs"].pop("name")
    return prompt


def test_applied_lora_changes_the_generation_and_strength_zero_does_not(host, trained):
    comfy_host, _, _, _, motion = host
    comfy_host.run(apply_prompt(motion, None))
    plain = comfy_host.output(DECODE).clone()
    comfy_host.run(apply_prompt(motion, 1.0))
    with_lora = comfy_host.output(DECODE).clone()
    info = comfy_host.output(MOTION_LORA.format(0), 1)
    assert "160 layers, rank 4" in info and "family: v3" in info and "steps: 1" in info
    assert torch.isfinite(with_lora).all()
    assert (with_lora - plain).abs().max() > 1e-3, "the motion LoRA did not change the generation"
    comfy_host.run(apply_prompt(motion, 0.0))
    assert torch.equal(comfy_host.output(DECODE), plain)
    # the same file through AnimateDiff-Evolved's own loader gives the same frames as our node
    comfy_host.run(apply_prompt(motion, 1.0, loader="ADE_AnimateDiffLoRALoader"))
    assert torch.equal(comfy_host.output(DECODE), with_lora)
    assert comfy_host.output(SAMPLER)["samples"].shape[0] == FRAMES


def test_cancel_saves_a_partial_lora_the_host_keeps_serving_and_a_requeue_trains_fully(host, trained):
    comfy_host, progress, lora_dir, made, motion = host
    name = "host_test_cancelled"
    made.add(f"{name}.safetensors")
    prompt = train_prompt(motion, lora_name=name, steps=2, seed=1, spatial_path=False, preview_every=0)
    progress["cancel_at"] = 1
    try:
        comfy_host.run(prompt, expect_success=False)
    finally:
        progress["cancel_at"] = None
    assert not comfy_host.executor.success
    assert any(event == "execution_interrupted" for event, _ in comfy_host.executor.status_messages)
    state, metadata = load_motion_lora(lora_dir / f"{name}.safetensors")
    assert metadata["steps_done"] == 1 and metadata["stopped_early"] is True
    assert len(state) == 2 * 160
    comfy_host.run(prompt)  # the same graph again: the cancelled training is not taken from the cache
    assert comfy_host.output(TRAIN, 0) == f"{name}.safetensors" and TRAIN not in cached_nodes(comfy_host)
    _, metadata = load_motion_lora(lora_dir / f"{name}.safetensors")
    assert metadata["steps_done"] == 2 and metadata["stopped_early"] is False
    comfy_host.run({  # the next prompt runs normally
        "video": {"class_type": "SMA_LoadReferenceVideo", "inputs": {
            "video": "reference.mp4", "frame_load_cap": 2, "skip_first_frames": 1, "select_every_nth": 1,
            "force_rate": 0.0, "width": 32, "height": 32}},
        "out": {"class_type": "PreviewImage", "inputs": {"images": link("video")}},
    })
    assert comfy_host.output("video").shape == (2, 32, 32, 3)


def _error_message(comfy_host, prompt: dict) -> str:
    comfy_host.run(prompt, expect_success=False)
    errors = comfy_host.errors()
    assert errors, "the prompt was expected to fail"
    return errors[-1]["exception_message"]


def test_bad_inputs_give_node_errors_with_clear_messages(host, trained):
    comfy_host, _, lora_dir, _, motion = host
    input_dir = Path(comfy_host.folder_paths.get_input_directory())
    (input_dir / "corrupt.mp4").write_text("this is not a video")
    message = _error_message(comfy_host, train_prompt(motion, video="corrupt.mp4"))
    assert "Load Reference Video" in message and "corrupt or not a video" in message
    write_video(input_dir / "one_frame.mp4", moving_shapes_clip(frames=2, height=SIZE, width=SIZE).frames[:1], fps=8)
    message = _error_message(comfy_host, train_prompt(motion, video="one_frame.mp4"))
    assert "leave 1 frame" in message and "at least" in message
    models = Path(comfy_host.models) / "animatediff_models"
    shutil.copy(lora_dir / f"{LORA_NAME}.safetensors", models / "not_a_motion_module.safetensors")
    try:
        message = _error_message(comfy_host, train_prompt("not_a_motion_module.safetensors"))
    finally:
        os.remove(models / "not_a_motion_module.safetensors")
    assert "Train Motion LoRA" in message and "LoRA" in message
    assert "Traceback" not in message


def loss_options_prompt(motion: str, name: str, **options) -> dict:
    """``train_prompt`` with an SMA Loss Options node plugged into the trainer's ``loss_options``."""
    prompt = train_prompt(motion, lora_name=name, steps=1, spatial_path=False, preview_every=0,
                          loss_options=link("options"))
    prompt["options"] = {"class_type": "SMA_LossOptions", "inputs": {
        "level_weights": "", "wavelet": "haar", "wavelet_mode": "auto", "weight_delta": 0.05, "weight_base": 1.0,
        "weight_sharpness": 1.0, "snr_gamma": 5.0, "phase_loss": "wrap", **options}}
    return prompt


def test_loss_options_node_reaches_the_trainer(host, trained):
    comfy_host, _, lora_dir, made, motion = host
    name = "host_test_loss_options"
    made.add(f"{name}.safetensors")
    comfy_host.run(loss_options_prompt(motion, name, level_weights="1, 0.5", wavelet_mode="reflect",
                                       weight_delta=0.1, weight_base=0.5, weight_sharpness=2.0, snr_gamma=0.0,
                                       phase_loss="raw"))
    _, metadata = load_motion_lora(lora_dir / f"{name}.safetensors")
    assert metadata["level_weights"] == [1.0, 0.5] and metadata["wavelet_mode"] == "reflect"
    assert (metadata["weight_delta"], metadata["weight_base"], metadata["weight_sharpness"]) == (0.1, 0.5, 2.0)
    assert metadata["snr_gamma"] is None and metadata["phase_loss"] == "raw" and metadata["wavelet_levels"] is None
    assert metadata["learning_rate"] == 5e-3 and metadata["spatial_path"] is False
    message = _error_message(comfy_host, loss_options_prompt(motion, name, level_weights="1, heavy"))
    assert "SMA Loss Options" in message and "level_weights must be numbers" in message
    message = _error_message(comfy_host, loss_options_prompt(motion, name, level_weights="1, 1, 1"))
    assert "Train Motion LoRA" in message and "level_weights has 3 values but 1 level(s) need 2" in message


def generate_prompt(motion: str, lora: str | None = None) -> dict:
    """Text-to-video with the training prompt's text; with ``lora``, that file through Apply Motion LoRA."""
    prompt = animatediff_prompt("sd15_random.safetensors", motion, positive=TRAIN_TEXT, seed=5, width=SIZE,
                                height=SIZE, frames=FRAMES)
    if lora is not None:
        prompt["lora"] = {"class_type": "SMA_ApplyMotionLoRA", "inputs": {"lora_name": lora, "strength": 1.0}}
        prompt[APPLY_MOTION_MODEL]["inputs"]["motion_lora"] = link("lora")
    return prompt


def train_and_generate_prompt(motion: str, lora_name: str, **settings) -> dict:
    """One prompt: train (2 steps) and sample with the trained LoRA (the trainer's lora_name linked into Apply
    Motion LoRA's trained_lora, whose own lora_name is not a file yet), sharing the checkpoint and the prompt."""
    prompt = {**generate_prompt(motion, "not_trained_yet.safetensors"),
              **train_prompt(motion, lora_name=lora_name, **settings)}
    prompt["lora"]["inputs"]["trained_lora"] = link(TRAIN, 0)
    return prompt


def test_one_queue_trains_and_generates_with_the_new_lora(host, trained):
    comfy_host, _, lora_dir, made, motion = host
    name = "host_test_one_queue"
    made.add(f"{name}.safetensors")
    (lora_dir / f"{name}.safetensors").unlink(missing_ok=True)  # left by an interrupted earlier run
    comfy_host.run(generate_prompt(motion))
    plain = comfy_host.output(DECODE).clone()
    comfy_host.run(train_and_generate_prompt(motion, name))
    first = comfy_host.output(DECODE).clone()
    assert (lora_dir / f"{name}.safetensors").is_file() and TRAIN not in cached_nodes(comfy_host)
    assert (first - plain).abs().max() > 1e-3, "the trained LoRA did not reach the sampler"
    # an unchanged re-queue: the trainer is cached, and so is the generation
    comfy_host.run(train_and_generate_prompt(motion, name))
    assert {TRAIN, DECODE} <= cached_nodes(comfy_host)
    # a later training of the same name replaces the file; the generation uses the new file
    comfy_host.run(train_and_generate_prompt(motion, name, seed=1))
    second = comfy_host.output(DECODE).clone()
    assert TRAIN not in cached_nodes(comfy_host) and (second - first).abs().max() > 1e-3
    comfy_host.run(generate_prompt(motion, f"{name}.safetensors"))  # the file on disk, picked from the list
    assert torch.equal(comfy_host.output(DECODE), second)
    # without the link, a missing file is a validation error that names the node's input
    valid, _, _, node_errors = comfy_host.validate(generate_prompt(motion, "not_trained_yet.safetensors"))
    assert not valid and "no motion LoRA named 'not_trained_yet.safetensors'" in str(node_errors["lora"])


def test_motion_options_node_reaches_the_trainer(host, trained):
    """Placement and recoloured copies from SMA Motion Options end up in the run (and its metadata)."""
    comfy_host, _, lora_dir, made, motion = host
    name = "host_test_motion_options"
    made.add(f"{name}.safetensors")
    prompt = train_prompt(motion, lora_name=name, steps=1, spatial_path=False, preview_every=0,
                          motion_options=link("motion"))
    prompt["motion"] = {"class_type": "SMA_MotionOptions", "inputs": {
        "targets": "attention_qk", "appearance_augment": 2, "objective": "vmc", "gradient_share_every": 1}}
    comfy_host.run(prompt)
    state, metadata = load_motion_lora(lora_dir / f"{name}.safetensors")
    assert metadata["targets"] == ["attention_qk"] and metadata["appearance_augment"] == 2
    assert metadata["objective"] == "vmc"
    assert metadata["clips"] == 1 and metadata["sma_gradient_share"] > 0  # the copies are not clips of their own
    assert {k.split(".")[-3] for k in state} == {"to_q_lora", "to_k_lora"}  # queries and keys only
