"""bench/ablation.py: the smoke preset runs the real path (toy base, Trainer with each SMA mode, sampling,
tracking, table and plot); the plan covers every mode, family and sweep value; paired differences pair seeds."""
from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ablation():
    spec = importlib.util.spec_from_file_location("ablation", REPO_ROOT / "bench" / "ablation.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["ablation"] = module
    spec.loader.exec_module(module)
    return module


def test_smoke_run_executes_the_real_path(ablation, tmp_path):
    assert ablation.main(["--preset", "smoke", "--appearance-b", "new", "--out", str(tmp_path)]) == 0
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert sorted({r["mode"] for r in rows}) == ["off", "paper", "plus"]
    assert len(rows) == 3 * 2 and {r["strength"] for r in rows} == {0.0, 1.0}
    for row in rows:
        assert row["family"] == "translate" and row["seed"] == 0 and row["steps"] == 2
        assert math.isfinite(row["final_loss"]) and 0 <= row["adherence"] <= 1 and row["leak"] >= 0
    base = [r for r in rows if r["strength"] == 0.0]
    assert all(r["leak"] == base[0]["leak"] for r in base)  # strength 0 = the same base, same noise, every mode
    table = (tmp_path / "table.md").read_text()
    assert "| **translate** | error |" in table and "paper − off" in table and "plus − off" in table
    image = np.asarray(Image.open(tmp_path / "ablation.png").convert("RGB"))
    assert image.shape[0] > 300 and image.shape[1] > 800 and image.std() > 10
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["preset"] == "smoke" and meta["budget"]["appearance_b"] == "new"


def test_b_with_the_reference_colours_keeps_them_and_leak_measures_the_background():
    """The default B (``shape``): A's colours on B's shape and background. Its leak is how far the background
    moved from B's towards A's: the reference clip scored as a sample of B (its motion is M's) leaks fully,
    B's own rendering not at all."""
    from sma.toyworld import transfer
    from sma.toyworld.world import Nuisance, render

    task = transfer.make_task("translate", 3)
    shape = transfer.new_shape_and_background(task)
    a, b, new = task.reference.appearance, shape.target, task.target
    assert torch.equal(b.hue, a.hue) and torch.equal(b.value, a.value) and torch.equal(b.striped, a.striped)
    assert torch.equal(b.kind, new.kind) and torch.equal(b.waves, new.waves) and not torch.equal(b.kind, a.kind)
    assert not torch.equal(shape.target_tokens, task.tokens) and torch.equal(shape.latents, task.latents)
    assert abs(float(a.grey - b.grey)) >= 0.15
    reference = transfer.score_samples(task.frames[None], shape)
    assert reference.leak == pytest.approx(1.0, abs=1e-6) and reference.adherence > 0.5 and reference.error < 1.0
    own = render(shape.target_scene(), Nuisance(), torch.Generator().manual_seed(3))
    assert abs(transfer.score_samples(own, shape).leak) < 0.1
    assert transfer.score_samples(task.frames[None], task).leak > 0.5  # B = new colours: A's colour is all leak


def test_plan_covers_modes_families_and_the_sweep(ablation):
    from sma.toyworld.world import FAMILIES

    runs = ablation.plan(FAMILIES, (0, 1, 2), FAMILIES)
    main = [r for r in runs if r.group == "main"]
    assert len(main) == 3 * len(FAMILIES) * 3 and len(set(main)) == len(main)
    sweep = [r for r in runs if r.group == "sweep"]
    for mode in ("paper", "plus"):
        globals_ = {r.lambda_global for r in sweep + main if r.mode == mode and r.lambda_local == 0.2}
        locals_ = {r.lambda_local for r in sweep + main if r.mode == mode and r.lambda_global == 0.4}
        assert {0.1, 0.4, 1.0} <= globals_ and {0.1, 0.4, 1.0} <= locals_
    assert {r.family for r in sweep if not r.snr} == set(FAMILIES)
    assert all(r.mode == "plus" for r in sweep if not r.snr)
    config = ablation.train_config(ablation.Run("orbit", 1, "paper", 1.0, 0.1), ablation.PRESETS["full"].budget)
    assert (config.sma_mode, config.sma.lambda_global, config.sma.lambda_local, config.seed) == ("paper", 1.0, 0.1, 1)
    no_snr = ablation.train_config(ablation.Run("orbit", 0, "plus", snr=False), ablation.PRESETS["full"].budget)
    assert no_snr.sma.snr_gamma is None and config.sma.snr_gamma is not None


def test_paired_differences_match_seeds(ablation):
    rows = []
    for seed, (off, plus) in enumerate([(2.0, 1.0), (3.0, 2.5), (1.0, 1.5)]):
        for mode, error in (("off", off), ("plus", plus)):
            rows.append({"group": "main", "family": "translate", "seed": seed, "mode": mode, "strength": 1.0,
                         "error": error})
    assert ablation.paired(rows, "error", "plus", 1.0) == [-1.0, -0.5, 0.5]
