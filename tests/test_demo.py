"""``python -m sma demo`` at its defaults, as a newcomer runs it: a motion LoRA learned on the pretrained toy
base must carry the reference motion to a new appearance, at most half the trajectory error without it."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sma.cli import demo as demo_cmd
from sma.cli.arguments import DEMO_SAMPLES, DEMO_STEPS
from sma.lora import load_motion_lora, lora_rank
from sma.viz import LOSS_CURVE_SIZE

REPO_ROOT = Path(__file__).resolve().parents[1]
FILES = ("motion_lora.safetensors", "demo.gif", "loss_curve.png", "summary.json")


def run_demo(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sma", "demo", *map(str, args)], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"}, check=False)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("demo") / "out"
    result = run_demo("--out", out)
    assert result.returncode == 0, result.stderr[-3000:]
    return result, out


def test_the_lora_carries_the_motion_to_a_new_appearance(demo):
    result, out = demo
    summary = json.loads((out / "summary.json").read_text())
    without, with_lora = summary["scores"]["without_lora"], summary["scores"]["with_lora"]
    assert with_lora["error"] <= 0.5 * without["error"], summary["scores"]
    assert with_lora["fidelity"] > without["fidelity"] + 0.2
    assert with_lora["adherence"] >= 0.75  # the new appearance is still drawn
    printed = re.search(r"without -> with the motion LoRA: ([\d.]+) -> ([\d.]+) px/frame", result.stdout)
    assert printed and float(printed.group(1)) == pytest.approx(without["error"], abs=0.006)
    assert float(printed.group(2)) == pytest.approx(with_lora["error"], abs=0.006)


def test_demo_writes_every_file(demo):
    result, out = demo
    for name in FILES:
        assert (out / name).is_file(), name
        assert str(out / name) in result.stdout
    assert "animatediff_motion_lora" in result.stdout and "python -m sma train" in result.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["steps"] == DEMO_STEPS and summary["settings"]["samples"] == DEMO_SAMPLES
    assert 0 < summary["seconds"]["training"] <= summary["seconds"]["total"]
    assert summary["base"]["wall_seconds"] > 0


def test_demo_gif_shows_reference_without_and_with(demo):
    _, out = demo
    tile, gap, top = 16 * demo_cmd.UPSCALE, demo_cmd.GAP, demo_cmd.HEADER
    with Image.open(out / "demo.gif") as gif:
        assert gif.n_frames == 8
        assert gif.size == (3 * tile + 2 * gap, top + DEMO_SAMPLES * tile + (DEMO_SAMPLES - 1) * gap)
        first = np.asarray(gif.convert("RGB")).astype(int)
        gif.seek(7)
        last = np.asarray(gif.convert("RGB")).astype(int)
    assert (first[:top] < 128).any()  # column titles
    reference_moved = np.abs(first[top:top + tile, :tile] - last[top:top + tile, :tile]).mean()
    assert reference_moved > 5  # the reference bar moved across the tile
    loss = np.asarray(Image.open(out / "loss_curve.png").convert("RGB"))
    assert loss.shape == (*LOSS_CURVE_SIZE, 3) and loss.std() > 10


def test_demo_lora_loads_with_metadata(demo):
    _, out = demo
    state, metadata = load_motion_lora(out / "motion_lora.safetensors")
    assert lora_rank(state) == demo_cmd.DEMO_RANK
    assert metadata["demo"] is True and metadata["family"] == "v3" and metadata["steps"] == DEMO_STEPS
    assert metadata["frames"] == 8 and metadata["sma_mode"] == "plus"


@pytest.mark.parametrize("argv, needle", [
    (["--steps", "0"], "--steps must be 1 or more"),
    (["--samples", "17"], "--samples must be 1..16"),
    (["--seed", "-1"], "--seed must be 0 or more"),
])
def test_demo_rejects_bad_settings(tmp_path, argv, needle):
    result = run_demo("--out", tmp_path / "unused", *argv, timeout=120)
    assert result.returncode == 2 and result.stderr.startswith("error: ") and needle in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "unused").exists()


def test_demo_ctrl_c_saves_the_partial_lora(tmp_path):
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "sma", "demo", "--out", str(out), "--steps", "100000"],
                               cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert process.stdout.readline().startswith("learning")  # printed right before the first step
        seen = ""
        while not re.search(r"\| ?[1-9]\d*/100000", seen):  # a finished step on the progress bar
            chunk = process.stderr.read(1)
            assert chunk, f"the demo ended before a training step finished: {seen}"
            seen = seen[-200:] + chunk
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert "Traceback" not in err and "partial motion LoRA saved to" in err
    state, metadata = load_motion_lora(out / "motion_lora_partial.safetensors")
    assert lora_rank(state) == demo_cmd.DEMO_RANK
    assert metadata["stopped_early"] is True and 1 <= metadata["steps"] < 100000
    assert not (out / "motion_lora.safetensors").exists()
