"""The SMA ablation's statistics: means over seeds, paired differences against ``off`` and their intervals."""
from __future__ import annotations

import math
import statistics
from typing import Any

METRICS = ("error", "fidelity", "leak", "found", "copied")
BETTER = {"error": "lower", "fidelity": "higher", "leak": "lower", "found": "higher", "copied": "lower"}


def finite(value: float | None) -> bool:
    """A number that is neither None nor NaN/inf."""
    return value is not None and math.isfinite(value)


def mean_std(values: list[float]) -> tuple[float, float, int]:
    """Mean, sample std (0 for one value) and count of the finite ``values`` (NaN, NaN, 0 for none)."""
    kept = [v for v in values if finite(v)]
    if not kept:
        return float("nan"), float("nan"), 0
    return statistics.fmean(kept), statistics.stdev(kept) if len(kept) > 1 else 0.0, len(kept)


def select(rows: list[dict], **where: Any) -> list[dict]:
    """The result rows whose fields equal ``where``."""
    return [r for r in rows if all(r[k] == v for k, v in where.items())]


def paired(rows: list[dict], metric: str, mode: str, strength: float) -> list[float]:
    """``mode - off`` of one metric per (family, seed), same seeds and initial noise."""
    base = {(r["family"], r["seed"]): r[metric] for r in select(rows, group="main", mode="off", strength=strength)}
    return [r[metric] - base[(r["family"], r["seed"])] for r in select(rows, group="main", mode=mode, strength=strength)
            if (r["family"], r["seed"]) in base and finite(r[metric]) and finite(base[(r["family"], r["seed"])])]


def t_quantile(p: float, dof: int) -> float:
    """Student's t quantile (Cornish-Fisher expansion around the normal quantile; within 0.03 of the exact value
    for dof >= 3, 0.003 for dof >= 5)."""
    z = statistics.NormalDist().inv_cdf(p)
    return z + (z**3 + z) / (4 * dof) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * dof**2) + (
        3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * dof**3)


def seed_noise(rows: list[dict], metric: str, strength: float) -> float:
    """Typical std over seeds of ``off`` within a family (the noise any effect is read against)."""
    stds = []
    for family in sorted({r["family"] for r in rows}):
        values = [r[metric] for r in select(rows, group="main", mode="off", family=family, strength=strength)]
        mean, std, n = mean_std(values)
        if n > 1:
            stds.append(std)
    return statistics.fmean(stds) if stds else 0.0
