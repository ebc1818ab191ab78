"""The motion-transfer test: does a motion LoRA move a NEW subject like the reference, or copy the reference?

For every recipe, motion family and seed: a reference clip (motion M, appearance A) of the toy world -> a motion
LoRA (the toy recipe, :mod:`sma.toyworld.recipe`, with the recipe's changes) -> samples of ``--subjects`` new
subjects B, each different from A in colour, shape and background (:func:`sma.toyworld.transfer.subject_tasks`),
and of A itself as the control, without the LoRA (strength 0) and with it (strength 1), same initial noise.

Per sample (``sma.toyworld.transfer.score_samples``): ``found`` (B identified by colour AND shape), ``error``
(trajectory error against M, px/frame), ``copied`` (closer to the reference clip than to B moving with M),
``leak`` (A's colour in B's samples). The goal, on the B's at strength 1: found >= 0.9, error <= 0.6 x the
base's, copied <= 0.25, leak <= 0.3; on A, error <= 0.6 x the base's (the motion is still learned).

Outputs in ``--out``: ``results.jsonl`` (a line per LoRA, subject and strength, appended as runs finish) and
``table.md`` (``python bench/transfer_test.py table --out OUT`` rewrites it from the lines).

    python bench/transfer_test.py run --recipes default,augment --families translate,orbit,zoom,turn --seeds 0,1,2 --out OUT
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GOAL = {"found": (">=", 0.9), "error_ratio": ("<=", 0.6), "copied": ("<=", 0.25), "leak": ("<=", 0.3),
        "control_error_ratio": ("<=", 0.6)}


@dataclass(frozen=True)
class Recipe:
    """Changes to the toy recipe: training settings (``appearance_augment``: recoloured copies of the reference
    for the motion path), and ``matching_tokens``: each copy with the tokens of its own look, an oracle only the
    toy world has (a user's prompt describes the original)."""

    settings: dict[str, Any] = field(default_factory=dict)
    matching_tokens: bool = False


AUGMENT = {"appearance_augment": 3}
RECIPES = {
    "default": Recipe(),
    "attention": Recipe({"targets": ("attention",)}),
    "qk": Recipe({"targets": ("attention_qk",)}),
    "augment": Recipe(AUGMENT),
    "augment_oracle": Recipe(AUGMENT, matching_tokens=True),
    "augment_qk": Recipe({**AUGMENT, "targets": ("attention_qk",)}),
    "augment_attention": Recipe({**AUGMENT, "targets": ("attention",)}),
    "qk_strong": Recipe({"targets": ("attention_qk",), "rank": 32, "learning_rate": 1e-2}),
    "qk_long": Recipe({"targets": ("attention_qk",), "rank": 32, "learning_rate": 1e-2, "steps": 1200}),
    "spatial_balanced": Recipe({"spatial_learning_rate": 3e-3}),
    "vmc": Recipe({"objective": "vmc"}),
    "vmc_attention": Recipe({"objective": "vmc", "targets": ("attention",)}),
    "augment_vmc": Recipe({**AUGMENT, "objective": "vmc"}),
    "off": Recipe({"sma_mode": "off"}),
    "paper": Recipe({"sma_mode": "paper"}),
}


def execute(recipe_name: str, family: str, seed: int, steps: int, subjects: int, samples: int,
            sample_steps: int) -> list[dict[str, Any]]:
    """Train one LoRA and score it on every subject at strengths 0 and 1; one row per subject and strength."""
    import torch

    torch.set_num_threads(1)
    from sma.toyworld import transfer
    from sma.toyworld.recipe import toy_train_config, toy_trainer

    recipe = RECIPES[recipe_name]
    started = time.perf_counter()
    task = transfer.make_task(family, seed)
    settings = dict(recipe.settings)
    steps = settings.pop("steps", steps)  # a recipe may train longer than the run's default
    trainer = toy_trainer(task, toy_train_config(steps, seed, **settings),
                          matching_tokens=recipe.matching_tokens)
    result = trainer.run()
    trained = time.perf_counter() - started
    rows = []
    for k, subject in enumerate(transfer.subject_tasks(task, subjects)):
        control = transfer.is_reference(subject)
        scores = transfer.evaluate(trainer.unet, subject, (0.0, 1.0), samples, seed=1000 + seed, steps=sample_steps)
        for strength, score in scores.items():
            rows.append({"recipe": recipe_name, "family": family, "seed": seed, "subject": "A" if control else k,
                         "strength": strength, **{m: (v if math.isfinite(v) else None) for m, v in asdict(score).items()},
                         "sma_gradient_share": result.metadata.get("sma_gradient_share"),
                         "train_seconds": round(trained, 1), "seconds": round(time.perf_counter() - started, 1)})
    return rows


def _mean(values: list[float | None]) -> float:
    kept = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.fmean(kept) if kept else float("nan")


def summarise(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Per recipe: the goal's figures (means over families, seeds and subjects) and the number of LoRAs."""
    out = {}
    for recipe in dict.fromkeys(r["recipe"] for r in rows):
        mine = [r for r in rows if r["recipe"] == recipe]
        key = lambda r: (r["family"], r["seed"], r["subject"])  # noqa: E731
        base = {key(r): r for r in mine if r["strength"] == 0.0}
        new = [r for r in mine if r["strength"] == 1.0 and r["subject"] != "A"]
        own = [r for r in mine if r["strength"] == 1.0 and r["subject"] == "A"]

        def ratios(selected: list[dict]) -> list[float | None]:
            return [r["error"] / base[key(r)]["error"] if r["error"] is not None and base[key(r)]["error"] else None
                    for r in selected]

        out[recipe] = {
            "loras": len({(r["family"], r["seed"]) for r in mine}),
            "found": _mean([r["found"] for r in new]), "found_base": _mean([base[key(r)]["found"] for r in new]),
            "error_ratio": _mean(ratios(new)), "copied": _mean([r["copied"] for r in new]),
            "leak": _mean([r["leak"] for r in new]), "control_error_ratio": _mean(ratios(own)),
            "control_found": _mean([r["found"] for r in own]),
            "sma_gradient_share": _mean([r["sma_gradient_share"] for r in own]),
        }
    return out


def meets(metric: str, value: float) -> bool:
    op, bound = GOAL[metric]
    return math.isfinite(value) and (value >= bound if op == ">=" else value <= bound)


def table(rows: list[dict]) -> str:
    """The summary as a markdown table, goal figures marked when met."""
    head = ("| recipe | LoRAs | B found | B found, base | B error / base | copied | leak | A error / base | "
            "A found | SMA gradient share |")
    lines = [head, "|---" * (head.count("|") - 1) + "|"]
    for recipe, s in summarise(rows).items():
        cell = lambda m, f="{:.2f}": (f.format(s[m]) + (" ✓" if m in GOAL and meets(m, s[m]) else ""))  # noqa: E731
        lines.append(f"| {recipe} | {s['loras']} | {cell('found')} | {s['found_base']:.2f} | {cell('error_ratio')} | "
                     f"{cell('copied')} | {cell('leak')} | {cell('control_error_ratio')} | {s['control_found']:.2f} | "
                     f"{s['sma_gradient_share']:.2f} |")
    goal = ", ".join(f"{m} {op} {bound}" for m, (op, bound) in GOAL.items())
    families = ", ".join(sorted({r["family"] for r in rows}))
    seeds = ", ".join(str(s) for s in sorted({r["seed"] for r in rows}))
    intro = (f"# Transfer or copy: toy-world recipes on new subjects\n\nFamilies {families}; seeds {seeds}; per LoRA, "
             "each new subject B (other colour, shape and background) and A itself (the control) sampled without "
             "the LoRA and with it at strength 1 from the same noise. Means over families, seeds and subjects; "
             "`bench/transfer_test.py` (its docstring has the command).\n\n")
    return intro + "\n".join(lines) + f"\n\nGoal (✓ where met): {goal}.\n"


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("run", "table"))
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--recipes", default="default", help=f"comma list of {', '.join(RECIPES)}")
    parser.add_argument("--families", default="translate,orbit,zoom,turn")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--subjects", type=int, default=3)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--sample-steps", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "results.jsonl"
    if args.command == "run":
        jobs = [(r, f, int(s)) for s in args.seeds.split(",") for r in args.recipes.split(",")
                for f in args.families.split(",")]
        unknown = {r for r, _, _ in jobs} - set(RECIPES)
        if unknown:
            parser.error(f"unknown recipes {sorted(unknown)}; known: {', '.join(RECIPES)}")
        with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(execute, r, f, s, args.steps, args.subjects, args.samples, args.sample_steps)
                       for r, f, s in jobs]
            for done, future in enumerate(as_completed(futures), start=1):
                rows = future.result()
                with log.open("a", encoding="utf-8") as handle:
                    handle.writelines(json.dumps(row) + "\n" for row in rows)
                r = rows[0]
                print(f"[{done}/{len(jobs)}] {r['recipe']} {r['family']} seed {r['seed']} ({r['seconds']:.0f} s)",
                      flush=True)
    rows = read_rows(log)
    (args.out / "table.md").write_text(table(rows), encoding="utf-8")
    print(table(rows))


if __name__ == "__main__":
    main()
