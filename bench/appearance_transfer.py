"""Which parts of a new appearance does a motion LoRA carry its motion to?

Trains the demo's motion LoRA once (``python -m sma demo``'s clip, settings and seed), then generates
appearances that differ from the reference's in one part at a time (background, shape, colour) and in
all of them, from the same noise, at LoRA strengths 0, 0.75 and 1, and scores each against the reference
motion (``sma.toyworld.transfer``: trajectory error, motion fidelity, share of frames where the shape is
found). Prints a Markdown table and writes it with the raw scores as JSON.

    python -m bench.appearance_transfer --out results/appearance_transfer     # about 5 minutes, 1 CPU thread
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sma.atomic import atomic_write_path  # noqa: E402
from sma.toyworld import recipe  # noqa: E402
from sma.toyworld import transfer  # noqa: E402

STRENGTHS = (0.0, 0.75, 1.0)
VARIANTS = {
    "nothing (the reference's own appearance)": (),
    "background": ("grey", "waves"),
    "shape": ("kind", "size", "aspect"),
    "shape and background": ("kind", "size", "aspect", "grey", "waves"),
    "colour": ("hue",),
    "colour and background": ("hue", "grey", "waves"),
    "colour, shape, texture and background (the pilot's B)": ("hue", "value", "kind", "size", "aspect", "striped",
                                                             "grey", "waves"),
}
"""What B takes from the demo's appearance B (:func:`sma.toyworld.recipe.demo_task`); the rest stays the reference's."""


def variant(task: transfer.TransferTask, fields: tuple[str, ...]) -> transfer.TransferTask:
    """The task with B = the reference's appearance, ``fields`` taken from the demo's B."""
    target = replace(task.reference.appearance, **{name: getattr(task.target, name) for name in fields})
    return transfer.retarget(task, target)


def _cell(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="results/appearance_transfer")
    parser.add_argument("--steps", type=int, default=400, help="LoRA training steps (default: the demo's)")
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    started = time.perf_counter()
    task = recipe.demo_task(args.seed)
    task = replace(task, target=transfer.make_task("translate", args.seed, reference=task.reference).target)
    trainer = recipe.toy_trainer(task, recipe.toy_train_config(args.steps, args.seed))
    trainer.run()
    model = trainer.unet
    rows = []
    for name, fields in VARIANTS.items():
        scores = transfer.evaluate(model, variant(task, fields), STRENGTHS, args.samples, seed=1000 + args.seed,
                                   steps=recipe.TOY_SAMPLE_STEPS)
        rows.append({"differs_in": name, "fields": list(fields),
                     "scores": {str(s): {k: x if math.isfinite(x) else None for k, x in asdict(v).items()}
                                for s, v in scores.items()}})
        print(f"{name}: " + "; ".join(f"{s:g}: error {_cell(v.error)} found {v.found:.0%} copied {_cell(v.copied)}"
                                      for s, v in scores.items()), flush=True)
    lines = ["| B differs from the reference in | trajectory error, px/frame (0 -> 0.75 -> 1) | motion fidelity | "
             "B found in frames (colour and shape) | samples copying the reference |", "|---|---|---|---|---|"]
    for row in rows:
        by = [row["scores"][str(s)] for s in STRENGTHS]
        lines.append(f"| {row['differs_in']} | " + " -> ".join(_cell(v["error"]) for v in by) + " | "
                     + " -> ".join(_cell(v["fidelity"]) for v in by) + " | "
                     + " -> ".join(f"{v['found']:.0%}" for v in by) + " | "
                     + " -> ".join(_cell(v["copied"]) for v in by) + " |")
    table = "\n".join(lines)
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {"steps": args.steps, "seed": args.seed, "samples": args.samples, "strengths": list(STRENGTHS),
              "seconds": round(time.perf_counter() - started, 1), "rows": rows}
    with atomic_write_path(out / "appearance_transfer.json") as tmp:
        tmp.write_text(json.dumps(record, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    with atomic_write_path(out / "appearance_transfer.md") as tmp:
        tmp.write_text(table + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
