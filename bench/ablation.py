"""Does SMA help? Motion transfer in the toy world with SMA off, paper and plus, measured against known motion.

For every motion family and seed: a reference clip (motion M, appearance A) -> a motion LoRA trained with
the pack's ``Trainer`` on the pretrained toy base (same step budget and settings for every mode) ->
samples of a new appearance B (default: A's colours on another shape and background; ``--appearance-b new``:
other colours and texture too) at LoRA strengths 0 (the base alone), 0.5 and 1, with the same
initial noise for every mode, so modes are compared pairwise. Scores (``sma.toyworld.transfer``):
trajectory error (px/frame, lower is better), motion fidelity (the pack's trajectory score, 1 = same
motion), appearance leak (how much of A shows in B's samples, 0 = none), found (B identified by colour and shape, 1 = all
frames) and copied (samples closer to the reference than to B moving with M).

A weight sweep runs on top (seed 0): ``lambda_global`` and ``lambda_local`` in {0.1, 0.4, 1.0} one at a
time (the other at its default), and plus mode with its SNR timestep weighting off, on translate and orbit.

Outputs in ``--out``: ``results.jsonl`` (one line per run and strength), ``table.md`` (mean +- std per
mode x family, paired differences against ``off`` with the same seeds, the sweep) and ``ablation.png``
(fidelity against leak over the LoRA strength per mode; error per family).

The work is split by job: ``ablation_plan.py`` (budgets, presets, the runs and running them),
``ablation_stats.py`` (means, paired differences, intervals) and ``ablation_report.py`` (the table and the plot);
this file is the command line (``run``, the default, and ``merge``).

Commands::

    python bench/ablation.py --preset quick --out OUT    # 4 families x 3 modes, seed 0: ~28 min on 2 CPU cores
    python bench/ablation.py --preset full --out OUT     # 7 families x 3 modes x 3 seeds + sweep: 75 LoRAs
    python bench/ablation.py --preset smoke --out OUT    # seconds: the code path
    python bench/ablation.py merge A/results.jsonl B/results.jsonl --preset full --out OUT   # one summary

Every preset runs on CPU cores, one thread per LoRA, in as many worker processes as there are cores (a
400-step LoRA with its evaluation took 4-5 minutes on one core, here and on a 16-core GPU machine). The
tiny model is bound by per-operation overhead, so a GPU is no faster per LoRA: an H100 took 0.57 s per
step (SMA plus), one CPU core 0.48 s. ``--seeds``, ``--families`` and ``--finish-by`` split the full grid
over machines or time boxes, and ``merge`` writes one summary of their ``results.jsonl`` files. ``quick``
and ``full`` share one budget, so the quick rows are the full grid's seed-0 rows for those families.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.ablation_plan import MODES, PRESETS, plan, read_results, run_all  # noqa: E402
from bench.ablation_report import write_summary  # noqa: E402
from sma.atomic import atomic_write_path  # noqa: E402

COMMANDS = ("run", "merge")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="train and score the preset's LoRAs (the default command)")
    merge = commands.add_parser("merge", help="run nothing: write one summary of results.jsonl files (e.g. from "
                                "several machines, same preset) into --out")
    merge.add_argument("results", nargs="+", metavar="RESULTS_JSONL")
    for sub in (run, merge):
        sub.add_argument("--preset", choices=sorted(PRESETS), default="quick")
        sub.add_argument("--out", default="docs/ablation/sma", help="output folder (default: %(default)s)")
        sub.add_argument("--device", default="cpu")
        sub.add_argument("--base", default=None, help="folder with toy base files (default: the shipped base)")
        sub.add_argument("--families", default=None, help="comma-separated motion families (default: the preset's)")
        sub.add_argument("--seeds", default=None, help="comma-separated seeds (default: the preset's)")
        sub.add_argument("--steps", type=int, default=None, help="LoRA training steps (default: the preset's)")
        sub.add_argument("--samples", type=int, default=None, help="samples per strength (default: the preset's)")
        sub.add_argument("--appearance-b", choices=("shape", "new"), default=None,
                         help="shape: A's colours on another shape and background; new: other colours too "
                              "(default: the preset's)")
    run.add_argument("--workers", type=int, default=None, help="parallel worker processes (default: the preset's)")
    run.add_argument("--modes", default=",".join(MODES), help="comma-separated SMA modes of the main grid "
                     "(default: %(default)s)")
    run.add_argument("--no-sweep", action="store_true", help="skip the weight sweep")
    run.add_argument("--finish-by", type=float, default=None,
                     help="seconds: start a run only if it should end by then (the summary covers what ran)")
    return parser


def main(argv: list[str] | None = None) -> int:
    from sma.toyworld.world import FAMILIES

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in (*COMMANDS, "-h", "--help"):
        argv.insert(0, "run")
    parser = _parser()
    args = parser.parse_args(argv)
    preset = PRESETS[args.preset]
    budget = preset.budget if args.steps is None else replace(preset.budget, steps=args.steps)
    budget = budget if args.samples is None else replace(budget, samples=args.samples)
    budget = budget if args.appearance_b is None else replace(budget, appearance_b=args.appearance_b)
    families = tuple(args.families.split(",")) if args.families else (preset.families or FAMILIES)
    seeds = tuple(int(s) for s in args.seeds.split(",")) if args.seeds else preset.seeds
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if args.command == "merge":
        rows = read_results(args.results)
        workers, seconds, merged_from = None, None, args.results
        with atomic_write_path(out / "results.jsonl") as tmp:
            tmp.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    else:
        sweep = () if args.no_sweep else (families if preset.sweep_families is None else preset.sweep_families)
        modes = tuple(m for m in args.modes.split(",") if m)
        if set(modes) - set(MODES):
            parser.error(f"--modes: unknown {sorted(set(modes) - set(MODES))}; known: {', '.join(MODES)}")
        runs = plan(families, seeds, tuple(f for f in sweep if f in families), preset.sweep_modes, modes)
        workers = args.workers if args.workers is not None else preset.workers
        if args.device == "cpu":
            workers = min(workers, os.cpu_count() or 1)
        print(f"{len(runs)} runs ({args.preset}: {budget}) on {args.device} with {workers} worker(s)", flush=True)
        rows = run_all(runs, budget, args.base, args.device, workers, out, args.finish_by)
        seconds, merged_from = time.perf_counter() - started, None
    lora_seconds = sum(r["seconds"] for r in rows if r["strength"] == max(budget.strengths))
    meta = {"preset": args.preset, "budget": asdict(budget), "families": list(families), "seeds": list(seeds),
            "base": args.base or "shipped toy base", "device": args.device, "workers": workers,
            "seconds": seconds, "lora_seconds": lora_seconds, "merged_from": merged_from}
    write_summary(rows, out, meta)
    with atomic_write_path(out / "meta.json") as tmp:
        tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    print((out / "table.md").read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
