"""``python -m sma demo`` as a newcomer runs it (with fewer steps and samples): it trains a motion LoRA on the
pretrained toy base, generates a new appearance without and with it, and reports what it measured."""
from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import DEMO_TEST_SAMPLES, DEMO_TEST_STEPS
from sma.cli import demo as demo_cmd
from sma.cli import main
from sma.lora import load_motion_lora, lora_rank
from sma.toyworld.recipe import TOY_RANK
from sma.viz import LOSS_CURVE_SIZE

REPO_ROOT = Path(__file__).resolve().parents[1]
FILES = ("motion_lora.safetensors", "demo.gif", "loss_curve.png", "summary.json")


@pytest.fixture(scope="module")
def demo(demo_run) -> tuple[subprocess.CompletedProcess, Path]:
    return demo_run


def test_the_demo_prints_what_it_measured(demo):
    """The printed errors are the summary's, and the base draws the new appearance (found in most frames).
    Whether the LoRA lowers the error is what README's "Does SMA help?" reports; it is not assumed here."""
    result, out = demo
    summary = json.loads((out / "summary.json").read_text())
    without, with_lora = summary["scores"]["without_lora"], summary["scores"]["with_lora"]
    assert without["found"] >= 0.75 and math.isfinite(without["error"]) and without["error"] > 0
    printed = re.search(r"without -> with the motion LoRA: ([\d.]+|nan) -> ([\d.]+|nan) px/frame", result.stdout)
    assert printed, result.stdout
    for text, value in zip(printed.groups(), (without["error"], with_lora["error"])):
        assert (text == "nan" and value is None) or float(text) == pytest.approx(value, abs=0.006)


def test_demo_writes_every_file(demo):
    result, out = demo
    for name in FILES:
        assert (out / name).is_file(), name
        assert str(out / name) in result.stdout
    assert "animatediff_motion_lora" in result.stdout and "python -m sma train" in result.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["steps"] == DEMO_TEST_STEPS and summary["settings"]["samples"] == DEMO_TEST_SAMPLES
    assert 0 < summary["seconds"]["training"] <= summary["seconds"]["total"]
    assert summary["base"]["wall_seconds"] > 0


def test_demo_gif_shows_reference_without_and_with(demo):
    _, out = demo
    tile, gap, top = 16 * demo_cmd.UPSCALE, demo_cmd.GAP, demo_cmd.HEADER
    with Image.open(out / "demo.gif") as gif:
        assert gif.n_frames == 8
        assert gif.size == (3 * tile + 2 * gap, top + DEMO_TEST_SAMPLES * tile + (DEMO_TEST_SAMPLES - 1) * gap)
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
    assert lora_rank(state) == TOY_RANK
    assert metadata["demo"] is True and metadata["family"] == "v3" and metadata["steps"] == DEMO_TEST_STEPS
    assert metadata["frames"] == 8 and metadata["sma_mode"] == "plus"


@pytest.mark.parametrize("argv, needle", [
    (["--steps", "0"], "--steps must be 1 or more"),
    (["--samples", "17"], "--samples must be 1..16"),
    (["--seed", "-1"], "--seed must be 0 or more"),
])
def test_demo_rejects_bad_settings(tmp_path, capsys, argv, needle):
    """In-process (the entry point's own exit codes run as subprocesses in tests/test_cli.py)."""
    assert main(["demo", "--out", str(tmp_path / "unused"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and needle in err and "Traceback" not in err
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
    assert lora_rank(state) == TOY_RANK
    assert metadata["stopped_early"] is True and 1 <= metadata["steps_done"] < 100000
    assert not (out / "motion_lora.safetensors").exists()
