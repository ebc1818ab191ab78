"""The SMA ablation's plan and runs: budgets, presets, the grid of runs, and running them (in worker processes).

:func:`plan` lists the runs of a preset; :func:`execute` trains and scores one LoRA with the toy recipe
(:mod:`sma.toyworld.recipe`); :func:`run_all` runs them in plan order and appends each row to ``results.jsonl``
as it comes; :func:`read_results` reads such files back (for ``ablation.py merge``).
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.ablation_stats import METRICS, finite  # noqa: E402
from sma.toyworld.recipe import (  # noqa: E402
    TOY_LEARNING_RATE,
    TOY_RANK,
    TOY_SAMPLE_STEPS,
    TOY_TARGETS,
    TOY_TIMESTEP_MIN,
)

MODES = ("off", "paper", "plus")
DEFAULT_LAMBDAS = (0.4, 0.2)
SWEEP_VALUES = (0.1, 0.4, 1.0)


@dataclass(frozen=True)
class Budget:
    """Training and evaluation budget shared by every run of one ablation."""

    steps: int = 400
    rank: int = TOY_RANK
    lr: float = TOY_LEARNING_RATE
    targets: tuple[str, ...] = TOY_TARGETS
    timestep_min: int = TOY_TIMESTEP_MIN
    samples: int = 6
    sample_steps: int = TOY_SAMPLE_STEPS
    strengths: tuple[float, ...] = (0.0, 0.5, 1.0)
    appearance_b: str = "shape"
    """``shape``: B keeps A's colours on another shape and background; ``new``: B also has other colours
    and texture (``sma.toyworld.transfer``)."""


@dataclass(frozen=True)
class Run:
    """One LoRA training + evaluation."""

    family: str
    seed: int
    mode: str
    lambda_global: float = DEFAULT_LAMBDAS[0]
    lambda_local: float = DEFAULT_LAMBDAS[1]
    snr: bool = True
    group: str = "main"


@dataclass(frozen=True)
class Preset:
    """A budget, the seeds, the families (None: all), and the sweep: its families (None: all, () = no
    sweep) and its SMA modes."""

    budget: Budget
    seeds: tuple[int, ...]
    families: tuple[str, ...] | None = None
    sweep_families: tuple[str, ...] | None = None
    sweep_modes: tuple[str, ...] = ("paper", "plus")
    workers: int = 1


GRID_BUDGET = Budget(samples=4, sample_steps=20)
"""The budget of the study's grid: the same on any machine, so rows from several machines combine."""
QUICK_FAMILIES = ("translate", "orbit", "zoom", "turn")

PRESETS = {
    "full": Preset(GRID_BUDGET, seeds=(0, 1, 2), sweep_families=("translate", "orbit"), sweep_modes=("plus",),
                   workers=os.cpu_count() or 1),
    "quick": Preset(GRID_BUDGET, seeds=(0,), families=QUICK_FAMILIES, sweep_families=(), workers=2),
    "smoke": Preset(Budget(steps=2, samples=1, sample_steps=2, strengths=(0.0, 1.0)), seeds=(0,),
                    families=("translate",), sweep_families=(), workers=1),
}


def plan(families: tuple[str, ...], seeds: tuple[int, ...], sweep_families: tuple[str, ...] = (),
         sweep_modes: tuple[str, ...] = ("paper", "plus"), modes: tuple[str, ...] = MODES) -> list[Run]:
    """The main grid (every mode x family x seed; seed by seed, so a deadline drops seeds, not families),
    then the sweep (seed 0): each lambda in :data:`SWEEP_VALUES` with the other at its default, per sweep
    mode, and plus mode without its SNR timestep weighting."""
    runs = [Run(f, s, m) for s in seeds for f in families for m in modes]
    for f in sweep_families:
        for mode in sweep_modes:
            for value in SWEEP_VALUES:
                if value != DEFAULT_LAMBDAS[0]:
                    runs.append(Run(f, seeds[0], mode, lambda_global=value, group="sweep"))
                if value != DEFAULT_LAMBDAS[1]:
                    runs.append(Run(f, seeds[0], mode, lambda_local=value, group="sweep"))
        runs.append(Run(f, seeds[0], "plus", snr=False, group="sweep"))
    return runs


def train_config(run: Run, budget: Budget):
    """The ``TrainConfig`` of a run: the toy recipe at the budget, the same for every mode; only the SMA settings
    differ."""
    from sma.toyworld.recipe import toy_train_config

    settings = {} if run.mode == "off" or run.snr else {"snr_gamma": None}
    return toy_train_config(budget.steps, run.seed, rank=budget.rank, learning_rate=budget.lr,
                            targets=budget.targets, timestep_min=budget.timestep_min, sma_mode=run.mode,
                            lambda_global=run.lambda_global, lambda_local=run.lambda_local, **settings)


def execute(run: Run, budget: Budget, base: str | None, device: str) -> list[dict[str, Any]]:
    """Train and evaluate one run; one result row per LoRA strength."""
    import torch

    torch.set_num_threads(1)  # many small runs side by side: one thread each
    from sma.toyworld import transfer
    from sma.toyworld.recipe import toy_trainer

    started = time.perf_counter()
    task = transfer.make_task(run.family, run.seed)
    if budget.appearance_b == "shape":
        task = transfer.new_shape_and_background(task)
    trainer = toy_trainer(task, train_config(run, budget), base, device)
    result = trainer.run()
    model = trainer.unet
    trained = time.perf_counter() - started
    scores = transfer.evaluate(model, task, budget.strengths, budget.samples, seed=1000 + run.seed,
                               steps=budget.sample_steps)
    final = result.losses[-1]
    return [asdict(run) | {"strength": strength} | _finite_or_none(asdict(score)) | {
        "train_seconds": round(trained, 1), "seconds": round(time.perf_counter() - started, 1),
        "final_loss": final.get("loss"), "steps": budget.steps} for strength, score in scores.items()]


def _finite_or_none(values: dict[str, float]) -> dict[str, float | None]:
    """NaN (a shape never found) becomes None, so the JSON lines stay standard JSON."""
    return {k: (v if math.isfinite(v) else None) for k, v in values.items()}


def run_all(runs: list[Run], budget: Budget, base: str | None, device: str, workers: int, out: Path,
            finish_by: float | None = None) -> list[dict]:
    """Execute the runs in plan order (in ``workers`` processes when > 1), appending rows to ``results.jsonl``
    as they come.

    ``finish_by`` (seconds from now): a run is started only if it should end by then, judged by the longest
    run so far, so a time-boxed machine ends with whole runs and a summary; the runs left out are listed.
    """
    rows: list[dict] = []
    log = out / "results.jsonl"
    log.write_text("", encoding="utf-8")
    started = time.perf_counter()
    longest = 0.0

    def keep(new_rows: list[dict], done: int) -> None:
        nonlocal longest
        rows.extend(new_rows)
        with log.open("a", encoding="utf-8") as handle:
            for row in new_rows:
                handle.write(json.dumps(row) + "\n")
        r = new_rows[-1]
        longest = max(longest, r["seconds"])
        print(f"[{done}/{len(runs)}] {r['family']:10s} seed {r['seed']} {r['mode']:5s} {r['group']:5s} "
              f"lg {r['lambda_global']} ll {r['lambda_local']} snr {r['snr']}: "
              + " ".join(f"{m} {r[m]:.2f}" if finite(r[m]) else f"{m} n/a" for m in METRICS)
              + f" ({r['seconds']:.0f} s; {time.perf_counter() - started:.0f} s total)", flush=True)

    def may_start() -> bool:
        return finish_by is None or time.perf_counter() - started + longest <= finish_by

    queue = list(runs)
    done = 0
    if workers <= 1:
        while queue and may_start():
            done += 1
            keep(execute(queue.pop(0), budget, base, device), done)
    else:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            active = set()
            while queue or active:
                while queue and len(active) < workers and may_start():
                    active.add(pool.submit(execute, queue.pop(0), budget, base, device))
                if not active:
                    break
                finished, active = wait(active, return_when=FIRST_COMPLETED)
                for future in finished:
                    done += 1
                    keep(future.result(), done)
    if queue:
        print(f"time is up: {len(queue)} run(s) not started: "
              + ", ".join(f"{r.family}/{r.seed}/{r.mode}/{r.group}" for r in queue), flush=True)
    return rows


def read_results(paths: list[str]) -> list[dict]:
    """Rows from earlier ``results.jsonl`` files (later files win for the same run and strength)."""
    rows: dict[tuple, dict] = {}
    for path in paths:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                rows[tuple(row[k] for k in (*Run.__dataclass_fields__, "strength"))] = row
    return list(rows.values())
