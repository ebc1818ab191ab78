"""bench/ablation.py: the smoke preset runs the real path (toy base, Trainer with each SMA mode, sampling,
tracking, table and plot); the plan covers every mode, family and sweep value; paired differences pair seeds."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench import ablation as ablation_cli
from bench import ablation_plan, ablation_stats

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_smoke_run_executes_the_real_path(tmp_path):
    assert ablation_cli.main(["--preset", "smoke", "--appearance-b", "new", "--out", str(tmp_path)]) == 0
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert sorted({r["mode"] for r in rows}) == ["off", "paper", "plus"]
    assert len(rows) == 3 * 2 and {r["strength"] for r in rows} == {0.0, 1.0}
    for row in rows:
        assert row["family"] == "translate" and row["seed"] == 0 and row["steps"] == 2
        assert math.isfinite(row["final_loss"]) and 0 <= row["found"] <= 1 and row["leak"] >= 0 and row["copied"] in (0.0, 1.0)
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
    assert reference.leak == pytest.approx(1.0, abs=1e-6) and reference.error < 1.0
    assert reference.found == 0.0 and reference.copied == 1.0  # A's own shape is not B's: a copy, not B
    own = render(shape.target_scene(), Nuisance(), torch.Generator().manual_seed(3))
    assert abs(transfer.score_samples(own, shape).leak) < 0.1
    assert transfer.score_samples(task.frames[None], task).leak > 0.5  # B = new colours: A's colour is all leak


def test_plan_covers_modes_families_and_the_sweep():
    from sma.toyworld.world import FAMILIES

    runs = ablation_plan.plan(FAMILIES, (0, 1, 2), FAMILIES)
    main = [r for r in runs if r.group == "main"]
    assert len(main) == 3 * len(FAMILIES) * 3 and len(set(main)) == len(main)
    sweep = [r for r in runs if r.group == "sweep"]
    for mode in ("paper", "plus"):
        globals_ = {r.lambda_global for r in sweep + main if r.mode == mode and r.lambda_local == 0.2}
        locals_ = {r.lambda_local for r in sweep + main if r.mode == mode and r.lambda_global == 0.4}
        assert {0.1, 0.4, 1.0} <= globals_ and {0.1, 0.4, 1.0} <= locals_
    assert {r.family for r in sweep if not r.snr} == set(FAMILIES)
    assert all(r.mode == "plus" for r in sweep if not r.snr)
    config = ablation_plan.train_config(ablation_plan.Run("orbit", 1, "paper", 1.0, 0.1), ablation_plan.PRESETS["full"].budget)
    assert (config.sma.sma_mode, config.sma.lambda_global, config.sma.lambda_local, config.sampling.seed) == ("paper", 1.0, 0.1, 1)
    no_snr = ablation_plan.train_config(ablation_plan.Run("orbit", 0, "plus", snr=False), ablation_plan.PRESETS["full"].budget)
    assert no_snr.sma.snr_gamma is None and config.sma.snr_gamma is not None


def test_paired_differences_match_seeds():
    rows = []
    for seed, (off, plus) in enumerate([(2.0, 1.0), (3.0, 2.5), (1.0, 1.5)]):
        for mode, error in (("off", off), ("plus", plus)):
            rows.append({"group": "main", "family": "translate", "seed": seed, "mode": mode, "strength": 1.0,
                         "error": error})
    assert ablation_stats.paired(rows, "error", "plus", 1.0) == [-1.0, -0.5, 0.5]


def _row(family, seed, mode, strength, error, **changes):
    run = ablation_plan.Run(family, seed, mode, **changes)
    return {**run.__dict__, "strength": strength, "error": error, "fidelity": 1 - error / 4, "leak": 0.5,
            "found": 1.0, "copied": 0.0, "train_seconds": 10.0, "seconds": 12.0, "final_loss": 0.1, "steps": 400}


def test_merge_combines_machines_into_one_summary(tmp_path):
    """Rows from two machines (other seeds) make one table; a run present in both counts once (the later)."""
    first = [_row(f, 0, m, s, 1.0 + (m == "plus")) for f in ("translate", "orbit")
             for m in ("off", "paper", "plus") for s in (0.0, 1.0)]
    second = [_row(f, 1, m, s, 2.0) for f in ("translate", "orbit") for m in ("off", "paper", "plus")
              for s in (0.0, 1.0)]
    second.append(_row("orbit", 0, "plus", 1.0, 3.0))  # a rerun of one run of the first machine
    second.append(_row("translate", 0, "plus", 1.0, 1.5, lambda_global=1.0, group="sweep"))
    paths = []
    for name, rows in (("a.jsonl", first), ("b.jsonl", second)):
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
        paths.append(str(tmp_path / name))
    out = tmp_path / "merged"
    assert ablation_cli.main(["merge", *paths, "--preset", "full", "--families", "translate,orbit",
                          "--out", str(out)]) == 0
    merged = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(merged) == len(first) + len(second) - 1
    assert [r["error"] for r in merged if (r["family"], r["seed"], r["mode"], r["strength"], r["group"])
            == ("orbit", 0, "plus", 1.0, "main")] == [3.0]
    table = (out / "table.md").read_text()
    # plus - off at strength 1: translate seed 0 +1, seed 1 0; orbit seed 0 (rerun) +2, seed 1 0
    assert "| plus − off | error | +0.750 ± 0.957 (n=4) | 0 / 2 |" in table
    assert "| plus | 1.0 | 0.2 | on | 1.50 | 0.62 |" in table  # the sweep row: one run, no spread
    meta = json.loads((out / "meta.json").read_text())
    assert meta["seconds"] is None and meta["lora_seconds"] == 12.0 * (4 * 3 + 1) and meta["merged_from"] == paths


def test_finish_by_starts_only_runs_that_fit(tmp_path, monkeypatch):
    """With a time box, runs are started while the longest run so far still fits; the rest are listed."""
    clock = {"now": 0.0}
    monkeypatch.setattr(ablation_plan.time, "perf_counter", lambda: clock["now"])

    def fake_execute(run, budget, base, device):
        clock["now"] += 40.0
        return [_row(run.family, run.seed, run.mode, 1.0, 1.0) | {"seconds": 40.0}]

    monkeypatch.setattr(ablation_plan, "execute", fake_execute)
    runs = ablation_plan.plan(("translate", "orbit"), (0,))
    rows = ablation_plan.run_all(runs, ablation_plan.PRESETS["smoke"].budget, None, "cpu", 1, tmp_path, finish_by=100.0)
    assert [(r["family"], r["mode"]) for r in rows] == [("translate", "off"), ("translate", "paper")]
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 2


@pytest.mark.parametrize("dof, exact", [(3, 3.1824), (5, 2.5706), (10, 2.2281), (20, 2.0860), (60, 2.0003)])
def test_t_quantile_matches_the_tables(dof, exact):
    """The interval of a paired mean uses Student's t (two-sided 95 %); textbook values of t(0.975, dof)."""
    assert ablation_stats.t_quantile(0.975, dof) == pytest.approx(exact, abs=0.03 if dof < 5 else 0.003)
