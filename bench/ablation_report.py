"""The SMA ablation's report: ``table.md`` (means, paired comparison, weight sweep) and ``ablation.png``."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from bench.ablation_plan import MODES
from bench.ablation_stats import BETTER, METRICS, finite, mean_std, paired, seed_noise, select, t_quantile

def _cell(values: list[float], digits: int = 2) -> str:
    mean, std, n = mean_std(values)
    if n <= 1:
        return "n/a" if n == 0 else f"{mean:.{digits}f}"  # one run: no spread to show
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def main_table(rows: list[dict], families: list[str], strength: float) -> list[str]:
    """Mean ± std over seeds per mode x family (main grid, one LoRA strength)."""
    lines = ["| family | metric | " + " | ".join(MODES) + " |", "|---|---|" + "---|" * len(MODES)]
    for family in families + ["all"]:
        for metric in METRICS:
            cells = []
            for mode in MODES:
                chosen = select(rows, group="main", mode=mode, strength=strength)
                if family != "all":
                    chosen = select(chosen, family=family)
                cells.append(_cell([r[metric] for r in chosen]))
            name = f"**{family}**" if metric == "error" else ""
            lines.append(f"| {name} | {metric} | " + " | ".join(cells) + " |")
    return lines


def paired_table(rows: list[dict], strength: float) -> list[str]:
    lines = ["| comparison | metric | mean difference ± std | better / worse (pairs) | effect / seed noise "
             "| 95 % interval of the mean |", "|---|---|---|---|---|---|"]
    for mode in ("paper", "plus"):
        for metric in METRICS:
            diffs = paired(rows, metric, mode, strength)
            mean, std, n = mean_std(diffs)
            if not n:
                continue
            sign = -1 if BETTER[metric] == "lower" else 1
            better = sum(1 for d in diffs if sign * d > 1e-9)
            worse = sum(1 for d in diffs if sign * d < -1e-9)
            noise = seed_noise(rows, metric, strength)
            ratio = f"{abs(mean) / noise:.2f}" if noise > 0 else "n/a"
            half = t_quantile(0.975, n - 1) * std / math.sqrt(n) if n > 1 else float("nan")
            interval = f"{mean - half:+.3f} .. {mean + half:+.3f}" if n > 1 else "n/a"
            lines.append(f"| {mode} − off | {metric} | {mean:+.3f} ± {std:.3f} (n={n}) | {better} / {worse} | {ratio} "
                         f"| {interval} |")
    return lines


def sweep_table(rows: list[dict], strength: float) -> list[str]:
    """Each swept weight setting against the defaults and ``off``, on the swept families only (seed 0)."""
    swept = {r["family"] for r in rows if r["group"] == "sweep"}
    sweep = [r for r in select(rows, strength=strength, seed=min((r["seed"] for r in rows), default=0))
             if r["family"] in swept]
    variants: dict[tuple, list[dict]] = {}
    for r in sweep:
        if r["mode"] == "off":
            continue
        key = (r["mode"], r["lambda_global"], r["lambda_local"], r["snr"])
        variants.setdefault(key, []).append(r)
    if not any(r["group"] == "sweep" for r in rows):
        return []
    lines = ["| mode | lambda_global | lambda_local | SNR weight | " + " | ".join(METRICS) + " |",
             "|---" * (4 + len(METRICS)) + "|"]
    for (mode, lg, ll, snr), chosen in sorted(variants.items()):
        cells = [_cell([r[m] for r in chosen]) for m in METRICS]
        lines.append(f"| {mode} | {lg} | {ll} | {'on' if snr else 'off'} | " + " | ".join(cells) + " |")
    off = select(sweep, mode="off", group="main")
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
        "brightness, 1 = the reference's); found: frames where the target is identified by colour and shape (1 = all); "
        "copied: samples closer to the reference clip than to the target moving with its motion (0 = none).",
        "",
        *main_table(rows, families, strength),
        "",
        f"### The base alone (LoRA strength 0), for scale: error "
        f"{_cell([r['error'] for r in select(rows, group='main', mode='off', strength=0.0)])}, fidelity "
        f"{_cell([r['fidelity'] for r in select(rows, group='main', mode='off', strength=0.0)])}",
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
    # without a leak to measure (A and B alike in brightness), the cost side is B lost (1 - found)
    leak = any(finite(r["leak"]) for r in rows)
    cost = (lambda r: r["leak"]) if leak else (lambda r: 1 - r["found"])  # noqa: E731
    for mode in MODES:
        xs, ys = [], []
        for s in strengths:
            chosen = select(rows, group="main", mode=mode, strength=s)
            xs.append(mean_std([cost(r) for r in chosen])[0])
            ys.append(mean_std([r["fidelity"] for r in chosen])[0])
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
            m, s, _ = mean_std([r["error"] for r in select(rows, group="main", mode=mode, family=family, strength=top)])
            means.append(m)
            stds.append(s)
        right.bar(np.arange(len(families)) + (k - 1) * width, means, width, yerr=stds, color=colours[mode], label=mode,
                  capsize=2)
    base = [mean_std([r["error"] for r in select(rows, group="main", mode="off", family=f, strength=0.0)])[0]
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
