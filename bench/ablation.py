"""Does SMA help? Motion transfer in the toy world with SMA off, paper and plus, measured against known motion.

For every motion family and seed: a reference clip (motion M, appearance A) -> a motion LoRA trained with
the pack's ``Trainer`` on the pretrained toy base (same step budget and settings for every mode) ->
samples of a new appearance B (default: A's colours on another shape and background; ``--appearance-b new``:
other colours and texture too) at LoRA strengths 0 (the base alone), 0.5 and 1, with the same
initial noise for every mode, so modes are compared pairwise. Scores (``sma.toyworld.transfer``):
trajectory error (px/frame, lower is better), motion fidelity (the pack's trajectory score, 1 = same
motion), appearance leak (how much of A shows in B's samples, 0 = none) and adherence (B's shapes found, 1 = all).

A weight sweep runs on top (seed 0): ``lambda_global`` and ``lambda_local`` in {0.1, 0.4, 1.0} one at a
time (the other at its default), and plus mode with its SNR timestep weighting off, on translate and orbit.

Outputs in ``--out``: ``results.jsonl`` (one line per run and strength), ``table.md`` (mean +- std per
mode x family, paired differences against ``off`` with the same seeds, the sweep) and ``ablation.png``
(fidelity against leak over the LoRA strength per mode; error per family).

Commands::

    python bench/ablation.py --preset quick --out OUT    # 4 families x 3 modes, seed 0: ~28 min on 2 CPU cores
    python bench/ablation.py --preset full --out OUT     # 7 families x 3 modes x 3 seeds + sweep: 75 LoRAs
    python bench/ablation.py --preset smoke --out OUT    # seconds: the code path

Every preset runs on CPU cores, one thread per LoRA, in as many worker processes as there are cores (a
400-step LoRA with its evaluation took 4-5 minutes on one core, here and on a 16-core GPU machine). The
tiny model is bound by per-operation overhead, so a GPU is no faster per LoRA: an H100 took 0.57 s per
step (SMA plus), one CPU core 0.48 s. ``--seeds``, ``--families`` and ``--finish-by`` split the full grid
over machines or time boxes, and ``--merge`` writes one summary of their ``results.jsonl`` files. ``quick``
and ``full`` share one budget, so the quick rows are the full grid's seed-0 rows for those families.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

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
METRICS = ("error", "fidelity", "leak", "adherence")
BETTER = {"error": "lower", "fidelity": "higher", "leak": "lower", "adherence": "higher"}


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


# --- one run (in a worker process) ------------------------------------------------------------------

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


# --- summary ------------------------------------------------------------------------------------------

def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _mean_std(values: list[float]) -> tuple[float, float, int]:
    finite = [v for v in values if _finite(v)]
    if not finite:
        return float("nan"), float("nan"), 0
    return statistics.fmean(finite), statistics.stdev(finite) if len(finite) > 1 else 0.0, len(finite)


def _cell(values: list[float], digits: int = 2) -> str:
    mean, std, n = _mean_std(values)
    if n <= 1:
        return "n/a" if n == 0 else f"{mean:.{digits}f}"  # one run: no spread to show
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _select(rows: list[dict], **where: Any) -> list[dict]:
    return [r for r in rows if all(r[k] == v for k, v in where.items())]


def main_table(rows: list[dict], families: list[str], strength: float) -> list[str]:
    """Mean ± std over seeds per mode x family (main grid, one LoRA strength)."""
    lines = ["| family | metric | " + " | ".join(MODES) + " |", "|---|---|" + "---|" * len(MODES)]
    for family in families + ["all"]:
        for metric in METRICS:
            cells = []
            for mode in MODES:
                chosen = _select(rows, group="main", mode=mode, strength=strength)
                if family != "all":
                    chosen = _select(chosen, family=family)
                cells.append(_cell([r[metric] for r in chosen]))
            name = f"**{family}**" if metric == "error" else ""
            lines.append(f"| {name} | {metric} | " + " | ".join(cells) + " |")
    return lines


def paired(rows: list[dict], metric: str, mode: str, strength: float) -> list[float]:
    """``mode - off`` of one metric per (family, seed), same seeds and initial noise."""
    base = {(r["family"], r["seed"]): r[metric] for r in _select(rows, group="main", mode="off", strength=strength)}
    return [r[metric] - base[(r["family"], r["seed"])] for r in _select(rows, group="main", mode=mode, strength=strength)
            if (r["family"], r["seed"]) in base and _finite(r[metric]) and _finite(base[(r["family"], r["seed"])])]


def paired_table(rows: list[dict], strength: float) -> list[str]:
    lines = ["| comparison | metric | mean difference ± std | better / worse (pairs) | effect / seed noise "
             "| 95 % interval of the mean |", "|---|---|---|---|---|---|"]
    for mode in ("paper", "plus"):
        for metric in METRICS:
            diffs = paired(rows, metric, mode, strength)
            mean, std, n = _mean_std(diffs)
            if not n:
                continue
            sign = -1 if BETTER[metric] == "lower" else 1
            better = sum(1 for d in diffs if sign * d > 1e-9)
            worse = sum(1 for d in diffs if sign * d < -1e-9)
            noise = _seed_noise(rows, metric, strength)
            ratio = f"{abs(mean) / noise:.2f}" if noise > 0 else "n/a"
            half = t_quantile(0.975, n - 1) * std / math.sqrt(n) if n > 1 else float("nan")
            interval = f"{mean - half:+.3f} .. {mean + half:+.3f}" if n > 1 else "n/a"
            lines.append(f"| {mode} − off | {metric} | {mean:+.3f} ± {std:.3f} (n={n}) | {better} / {worse} | {ratio} "
                         f"| {interval} |")
    return lines


def t_quantile(p: float, dof: int) -> float:
    """Student's t quantile (Cornish-Fisher expansion around the normal quantile; within 0.03 of the exact value
    for dof >= 3, 0.003 for dof >= 5)."""
    z = statistics.NormalDist().inv_cdf(p)
    return z + (z**3 + z) / (4 * dof) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * dof**2) + (
        3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * dof**3)


def _seed_noise(rows: list[dict], metric: str, strength: float) -> float:
    """Typical std over seeds of ``off`` within a family (the noise any effect is read against)."""
    stds = []
    for family in sorted({r["family"] for r in rows}):
        values = [r[metric] for r in _select(rows, group="main", mode="off", family=family, strength=strength)]
        mean, std, n = _mean_std(values)
        if n > 1:
            stds.append(std)
    return statistics.fmean(stds) if stds else 0.0


def sweep_table(rows: list[dict], strength: float) -> list[str]:
    """Each swept weight setting against the defaults and ``off``, on the swept families only (seed 0)."""
    swept = {r["family"] for r in rows if r["group"] == "sweep"}
    sweep = [r for r in _select(rows, strength=strength, seed=min((r["seed"] for r in rows), default=0))
             if r["family"] in swept]
    variants: dict[tuple, list[dict]] = {}
    for r in sweep:
        if r["mode"] == "off":
            continue
        key = (r["mode"], r["lambda_global"], r["lambda_local"], r["snr"])
        variants.setdefault(key, []).append(r)
    if not any(r["group"] == "sweep" for r in rows):
        return []
    lines = ["| mode | lambda_global | lambda_local | SNR weight | error | fidelity | leak | adherence |",
             "|---|---|---|---|---|---|---|---|"]
    for (mode, lg, ll, snr), chosen in sorted(variants.items()):
        cells = [_cell([r[m] for r in chosen]) for m in METRICS]
        lines.append(f"| {mode} | {lg} | {ll} | {'on' if snr else 'off'} | " + " | ".join(cells) + " |")
    off = _select(sweep, mode="off", group="main")
    lines.append("| off | - | - | - | " + " | ".join(_cell([r[m] for r in off]) for m in METRICS) + " |")
    return lines


def write_summary(rows: list[dict], out: Path, meta: dict[str, Any]) -> None:
    from sma.atomic import atomic_write_path

    families = [f for f in meta["families"] if any(r["family"] == f for r in rows)]
    strength = max(meta["budget"]["strengths"])
    text = [
        "# Motion transfer in the toy world: SMA off / paper / plus",
        "",
        f"Settings: {json.dumps(meta['budget'])}; seeds {meta['seeds']}; base: {meta['base']}; device: "
        f"{meta['device']}; {_times(meta)}.",
        "",
        f"## Mean ± std over seeds, LoRA strength {strength}",
        "",
        "error: trajectory error, px/frame (lower is better); fidelity: trajectory score (1 = same motion); "
        "leak: how much of the reference's appearance shows in the samples (0 = none; B with new colours: the "
        "reference's colours, as a share of its shape's area; B with the reference's colours: its background's "
        "brightness, 1 = the reference's); adherence: target shapes found (1 = all frames).",
        "",
        *main_table(rows, families, strength),
        "",
        f"### The base alone (LoRA strength 0), for scale: error "
        f"{_cell([r['error'] for r in _select(rows, group='main', mode='off', strength=0.0)])}, fidelity "
        f"{_cell([r['fidelity'] for r in _select(rows, group='main', mode='off', strength=0.0)])}",
        "",
        "## Paired comparison against off (same family, seed and initial noise)",
        "",
        "effect / seed noise: |mean difference| divided by the typical std over seeds of `off` within a family.",
        "",
        *paired_table(rows, strength),
    ]
    sweep = sweep_table(rows, strength)
    if sweep:
        swept = sorted({r["family"] for r in rows if r["group"] == "sweep"}, key=families.index)
        text += ["", f"## Weight sweep (seed {min(meta['seeds'])}; {', '.join(swept)}; mean ± std over these "
                 "families, with the main grid's run of each family at the default weights)", "", *sweep]
    with atomic_write_path(out / "table.md") as tmp:
        tmp.write_text("\n".join(text) + "\n", encoding="utf-8")
    plot(rows, families, out / "ablation.png")


def _times(meta: dict[str, Any]) -> str:
    runs = f"{meta['lora_seconds']:.0f} s summed over the LoRAs (training + evaluation)"
    return runs if meta["seconds"] is None else f"wall time {meta['seconds']:.0f} s, {runs}"


def plot(rows: list[dict], families: list[str], path: Path) -> None:
    """Left: fidelity against leak over LoRA strength per mode; right: error per family and mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from sma.viz import save_png

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), dpi=100)
    strengths = sorted({r["strength"] for r in rows})
    colours = {"off": "#777777", "paper": "#1f77b4", "plus": "#d62728"}
    # without a leak to measure (A and B alike in brightness), the cost side is B lost (1 - adherence)
    leak = any(_finite(r["leak"]) for r in rows)
    cost = (lambda r: r["leak"]) if leak else (lambda r: 1 - r["adherence"])  # noqa: E731
    for mode in MODES:
        xs, ys = [], []
        for s in strengths:
            chosen = _select(rows, group="main", mode=mode, strength=s)
            xs.append(_mean_std([cost(r) for r in chosen])[0])
            ys.append(_mean_std([r["fidelity"] for r in chosen])[0])
        left.plot(xs, ys, "o-", color=colours[mode], label=mode)
        for x, y, s in zip(xs, ys, strengths):
            left.annotate(f"{s:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    left.set_xlabel("appearance leak (0 = none)" if leak else "frames where B is lost (0 = none)")
    left.set_ylabel("motion fidelity (1 = same motion)")
    left.set_title(f"fidelity vs {'leak' if leak else 'B lost'} over LoRA strength (labels)")
    left.legend()
    width = 0.27
    top = max(strengths)
    for k, mode in enumerate(MODES):
        means, stds = [], []
        for family in families:
            m, s, _ = _mean_std([r["error"] for r in _select(rows, group="main", mode=mode, family=family, strength=top)])
            means.append(m)
            stds.append(s)
        right.bar(np.arange(len(families)) + (k - 1) * width, means, width, yerr=stds, color=colours[mode], label=mode,
                  capsize=2)
    base = [_mean_std([r["error"] for r in _select(rows, group="main", mode="off", family=f, strength=0.0)])[0]
            for f in families]
    right.scatter(np.arange(len(families)), base, marker="_", s=300, color="black", label="base (no LoRA)", zorder=3)
    right.set_xticks(np.arange(len(families)), families, rotation=30, ha="right")
    right.set_ylabel("trajectory error, px/frame (lower is better)")
    right.set_title(f"error per motion family, LoRA strength {top:g}")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    save_png(image, path)


# --- driver -------------------------------------------------------------------------------------------

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
              + " ".join(f"{m} {r[m]:.2f}" if _finite(r[m]) else f"{m} n/a" for m in METRICS)
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


def main(argv: list[str] | None = None) -> int:
    from sma.toyworld.world import FAMILIES

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="quick")
    parser.add_argument("--out", default="docs/ablation", help="output folder (default: %(default)s)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--base", default=None, help="folder with toy base files (default: the shipped base)")
    parser.add_argument("--families", default=None, help="comma-separated motion families (default: the preset's)")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (default: the preset's)")
    parser.add_argument("--steps", type=int, default=None, help="LoRA training steps (default: the preset's)")
    parser.add_argument("--workers", type=int, default=None, help="parallel worker processes (default: the preset's)")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated SMA modes of the main grid "
                        "(default: %(default)s)")
    parser.add_argument("--no-sweep", action="store_true", help="skip the weight sweep")
    parser.add_argument("--samples", type=int, default=None, help="samples per strength (default: the preset's)")
    parser.add_argument("--appearance-b", choices=("shape", "new"), default=None,
                        help="shape: A's colours on another shape and background; new: other colours too "
                             "(default: the preset's)")
    parser.add_argument("--finish-by", type=float, default=None,
                        help="seconds: start a run only if it should end by then (the summary covers what ran)")
    parser.add_argument("--merge", nargs="+", metavar="RESULTS_JSONL", default=None,
                        help="run nothing: write the summary of these results.jsonl files (e.g. from several "
                             "machines, same preset) into --out")
    args = parser.parse_args(argv)
    preset = PRESETS[args.preset]
    budget = preset.budget if args.steps is None else replace(preset.budget, steps=args.steps)
    budget = budget if args.samples is None else replace(budget, samples=args.samples)
    budget = budget if args.appearance_b is None else replace(budget, appearance_b=args.appearance_b)
    families = tuple(args.families.split(",")) if args.families else (preset.families or FAMILIES)
    seeds = tuple(int(s) for s in args.seeds.split(",")) if args.seeds else preset.seeds
    sweep = () if args.no_sweep else (families if preset.sweep_families is None else preset.sweep_families)
    modes = tuple(m for m in args.modes.split(",") if m)
    if set(modes) - set(MODES):
        parser.error(f"--modes: unknown {sorted(set(modes) - set(MODES))}; known: {', '.join(MODES)}")
    runs = plan(families, seeds, tuple(f for f in sweep if f in families), preset.sweep_modes, modes)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    workers = args.workers if args.workers is not None else preset.workers
    if args.device == "cpu":
        workers = min(workers, os.cpu_count() or 1)
    started = time.perf_counter()
    if args.merge:
        rows = read_results(args.merge)
        merged = out / "results.jsonl"
        text = "".join(json.dumps(row) + "\n" for row in rows)
    else:
        print(f"{len(runs)} runs ({args.preset}: {budget}) on {args.device} with {workers} worker(s)", flush=True)
        rows = run_all(runs, budget, args.base, args.device, workers, out, args.finish_by)
    lora_seconds = sum(r["seconds"] for r in rows if r["strength"] == max(budget.strengths))
    meta = {"preset": args.preset, "budget": asdict(budget), "families": list(families), "seeds": list(seeds),
            "base": args.base or "shipped toy base", "device": args.device, "workers": workers,
            "seconds": None if args.merge else time.perf_counter() - started, "lora_seconds": lora_seconds,
            "merged_from": args.merge}
    from sma.atomic import atomic_write_path

    if args.merge:
        with atomic_write_path(merged) as tmp:
            tmp.write_text(text, encoding="utf-8")
    write_summary(rows, out, meta)

    with atomic_write_path(out / "meta.json") as tmp:
        tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    print((out / "table.md").read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
