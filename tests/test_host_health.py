"""The host stays healthy: the real ComfyUI + AnimateDiff-Evolved process (in-process harness, CPU) runs
trainings back to back without keeping memory, threads or open files; a failing prompt leaves the next one
working; nothing tries the network; a bad motion LoRA is an error in the UI (no traceback) and never reaches
ADE's motion model half-applied. A re-queue after a cancel is tested in test_host_nodes.

Models are the random full-size SD1.5 checkpoint and v3 motion module of the other host tests; clips are
4 frames at 64 x 64 so each training step takes seconds.
"""
from __future__ import annotations

import gc
import os
import socket
import sys
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from host_compat import cached_outputs
from sma.lora import ade_lora_key, load_motion_lora
from sma.lora.validate import motion_lora_layers
from synthetic_clips import moving_shapes_clip
from sma.video import write_video
from test_host_nodes import FRAMES, SIZE, TRAIN, train_prompt

RSS_TOLERANCE = 0.05


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


class NetworkBlocked(AssertionError):
    pass


@pytest.fixture
def no_network(monkeypatch):
    """``socket.socket.connect`` (and ``connect_ex`` / ``create_connection``) raise; records every try."""
    tries: list = []

    def refuse(self, address, *args):
        tries.append(address)
        raise NetworkBlocked(f"network access attempted: {address!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", lambda address, *a, **k: refuse(None, address))
    return tries


@pytest.fixture(scope="module")
def host(comfy_host, full_sd15_checkpoint_file, full_v3_motion_module_in_host):
    """The host with the models placed and a reference clip; a progress hook that can press Cancel."""
    import comfy.model_management
    import comfy.utils

    input_dir = Path(comfy_host.folder_paths.get_input_directory())
    write_video(input_dir / "reference.mp4", moving_shapes_clip(frames=FRAMES, height=SIZE, width=SIZE, seed=3).frames,
                fps=8)
    control = {"cancel_at": None}

    def hook(value, total, preview, prompt_id=None, node_id=None):
        comfy.model_management.throw_exception_if_processing_interrupted()
        if control["cancel_at"] is not None and value >= control["cancel_at"]:
            comfy.model_management.interrupt_current_processing(True)

    comfy.utils.set_progress_bar_global_hook(hook)
    lora_dir = Path(comfy_host.folder_paths.models_dir) / "animatediff_motion_lora"
    made: list[Path] = []
    yield comfy_host, control, lora_dir, made, full_v3_motion_module_in_host
    comfy.utils.set_progress_bar_global_hook(None)
    for path in made:
        path.unlink(missing_ok=True)


def train(comfy_host, made: list, lora_dir: Path, motion: str, name: str, **settings) -> Path:
    made.append(lora_dir / f"{name}.safetensors")
    comfy_host.run(train_prompt(motion, lora_name=name, checkpoint_every=0, preview_every=0, **settings))
    return lora_dir / f"{name}.safetensors"


def settle() -> None:
    gc.collect()
    import comfy.model_management

    comfy.model_management.soft_empty_cache()


def test_two_trainings_back_to_back_keep_no_memory_threads_or_files_and_never_use_the_network(host, no_network):
    comfy_host, _, lora_dir, made, motion = host
    train(comfy_host, made, lora_dir, motion, "health_warmup", steps=1, seed=10)  # loads and caches the models
    settle()
    before = (rss_bytes(), os_threads(), threading.active_count(), open_fds())
    first = train(comfy_host, made, lora_dir, motion, "health_first", steps=1, seed=11)
    second = train(comfy_host, made, lora_dir, motion, "health_second", steps=1, seed=12)
    settle()
    after = (rss_bytes(), os_threads(), threading.active_count(), open_fds())
    if torch.cuda.is_available():
        assert torch.cuda.memory_allocated() == 0
    growth = (after[0] - before[0]) / before[0]
    print(f"\n[health] RSS before {before[0] / 2**20:.0f} MiB, after two trainings {after[0] / 2**20:.0f} MiB "
          f"({growth:+.1%}); OS threads {before[1]} -> {after[1]}, Python threads {before[2]} -> {after[2]}, "
          f"open fds {before[3]} -> {after[3]}", file=sys.stderr)
    (first_state, first_meta), (second_state, second_meta) = load_motion_lora(first), load_motion_lora(second)
    assert first_meta["steps_done"] == 1 and second_meta["steps_done"] == 1 and first_state.keys() == second_state.keys()
    assert any(not torch.equal(first_state[k], second_state[k]) for k in first_state)  # the second really trained
    assert abs(growth) <= RSS_TOLERANCE, f"RSS {before[0]} -> {after[0]} ({growth:+.1%})"
    assert after[1] <= before[1] and after[2] <= before[2], "threads were left running"
    assert after[3] <= before[3], "file handles were left open"
    assert no_network == []


def test_failing_prompts_leave_the_next_one_working(host, monkeypatch):
    comfy_host, _, lora_dir, made, motion = host
    input_dir = Path(comfy_host.folder_paths.get_input_directory())
    (input_dir / "health_broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 broken")
    comfy_host.run(train_prompt(motion, lora_name="health_bad_video", video="health_broken.mp4"), expect_success=False)
    assert "Load Reference Video" in comfy_host.errors()[-1]["exception_message"]
    models = Path(comfy_host.models) / "animatediff_models"
    save_file({"down_blocks.0.resnets.0.conv1.weight": torch.zeros(4, 4)}, str(models / "health_wrong.safetensors"))
    try:
        comfy_host.run(train_prompt("health_wrong.safetensors", lora_name="health_wrong"), expect_success=False)
    finally:
        (models / "health_wrong.safetensors").unlink()
    assert "not an AnimateDiff motion module" in comfy_host.errors()[-1]["exception_message"]
    trainer_module = next(m for name, m in sys.modules.items()
                          if name.endswith("comfyui-sma.sma.training.trainer"))  # the pack as the host imported it
    monkeypatch.setattr(trainer_module, "debiased_mse", lambda *args: torch.tensor(float("nan")))  # NaN loss
    comfy_host.run(train_prompt(motion, lora_name="health_nan", steps=2, seed=13, checkpoint_every=0),
                   expect_success=False)
    monkeypatch.undo()
    message = comfy_host.errors()[-1]["exception_message"]
    assert "diverged at step 1" in message and "NaN or inf" in message and "Traceback" not in message
    assert not (lora_dir / "health_nan.safetensors").exists()
    path = train(comfy_host, made, lora_dir, motion, "health_after_errors", steps=1, seed=14)
    state, metadata = load_motion_lora(path)
    assert metadata["steps_done"] == 1 and all(bool(torch.isfinite(t).all()) for t in state.values())


def test_bad_motion_lora_is_a_ui_error_and_ade_motion_model_stays_unpatched(host):
    """A LoRA whose last layer is NaN and one whose last layer has another width: the node refuses both before
    ADE sees them (ADE would skip the unfit layer and apply the rest), so no motion model gets any of their
    layers; a good LoRA patches every layer."""
    comfy_host, _, lora_dir, made, motion = host
    generator = torch.Generator().manual_seed(16)
    state = {}  # a rank-2 attention LoRA of the SD1.5 v3 layout (160 layers), in file order
    for module, (out_features, in_features) in motion_lora_layers(has_mid_block=False).items():
        if ".attention_blocks." in module:
            state[ade_lora_key(module, "down")] = (torch.randn(2, in_features, generator=generator) * 0.1).half()
            state[ade_lora_key(module, "up")] = (torch.randn(out_features, 2, generator=generator) * 0.1).half()
    keys = list(state)
    nan = {k: v.clone() for k, v in state.items()}
    nan[keys[-1]][0, 0] = float("nan")
    wide = dict(state)
    wide[keys[-2]] = torch.zeros(wide[keys[-2]].shape[0], 321, dtype=torch.float16)  # down [r, 321]
    for name, tensors in (("health_nan_lora", nan), ("health_wide_lora", wide), ("health_good", state)):
        path = lora_dir / f"{name}.safetensors"
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
        made.append(path)
    for name, needle in (("health_nan_lora", "NaN/inf"), ("health_wide_lora", "321")):
        comfy_host.executor.reset()
        comfy_host.run(ade_prompt(motion, f"{name}.safetensors"), expect_success=False)
        error = comfy_host.errors()[-1]
        assert error["node_type"] == "SMA_ApplyMotionLoRA", error
        message = error["exception_message"]
        assert message.startswith("Apply Motion LoRA: ") and f"{name}.safetensors" in message and needle in message
        assert "Traceback" not in message and "File \"" not in message
        assert cached_outputs(comfy_host.executor, "apply") is None, "ADE applied a refused LoRA"
    comfy_host.run(ade_prompt(motion, "health_good.safetensors"))
    (motion_model,) = comfy_host.output("apply").models
    assert len(motion_model.patches) == 160  # every layer of the good LoRA, none skipped


def ade_prompt(motion: str, lora_name: str) -> dict:
    """ADE's motion model with one LoRA through Apply Motion LoRA (SMA) and ADE's Apply AnimateDiff Model."""
    return {
        "mm": {"class_type": "ADE_LoadAnimateDiffModel", "inputs": {"model_name": motion}},
        "lora": {"class_type": "SMA_ApplyMotionLoRA", "inputs": {"lora_name": lora_name, "strength": 1.0}},
        "apply": {"class_type": "ADE_ApplyAnimateDiffModelSimple",
                  "inputs": {"motion_model": ["mm", 0], "motion_lora": ["lora", 0]}},
        "out": {"class_type": "PreviewAny", "inputs": {"source": ["apply", 0]}},
    }
