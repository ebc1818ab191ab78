"""Merge several motion LoRAs into one ADE-format file: a weighted sum of their weight updates.

Each source ``i`` (weight ``w_i``) changes layer ``W`` by ``w_i * up_i @ down_i``. The merged LoRA's
update is ``sum_i w_i * up_i @ down_i``, written in one of two ways:

- **exact** (``rank=None``): the ranks are concatenated, ``down = [down_1; down_2; ...]``
  ``[sum r_i, in]`` and ``up = [w_1 up_1, w_2 up_2, ...]`` ``[out, sum r_i]``; the product is the weighted
  sum exactly, up to the rounding of the written dtype (fp16: a relative error near 1e-4). The file grows
  with the total rank.
- **compressed** (``rank=k``): per layer, the best rank-``k`` approximation of the sum (truncated SVD,
  computed through QR factors of the stacked ``up`` and ``down``, never the full ``[out, in]`` update
  when it is not needed). The relative error per layer and over all layers is reported.

Layers that only some sources have get only those sources' updates. Sources from different motion-module
families (a v2 LoRA with mid-block layers and a v3 one) or with different layer sizes are refused.
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import SMAInputError
from .adapters import MAX_RANK
from .files import load_motion_lora
from .keys import ade_lora_key, parse_lora_key


@dataclass(frozen=True)
class LoRASource:
    """One motion LoRA to merge: its ADE-layout tensors, metadata, weight and a name for messages."""

    name: str
    state: Mapping[str, torch.Tensor]
    weight: float = 1.0
    metadata: Mapping[str, object] = field(default_factory=dict)

    def pairs(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """``{original-naming layer: (down [r, in], up [out, r])}``."""
        out = {}
        for key, down in self.state.items():
            parsed = parse_lora_key(key)
            if parsed is not None and parsed.role == "down":
                out[parsed.module] = (down, self.state[ade_lora_key(parsed.module, "up")])
        return out

    @property
    def family(self) -> str | None:
        """The motion-module family from the metadata, else ``v2`` when the LoRA has mid-block layers,
        else None (v1, v3 and AnimateLCM LoRAs share one layout)."""
        family = self.metadata.get("family")
        if isinstance(family, str) and family:
            return family
        return "v2" if any(m.startswith("mid_block.") for m in self.pairs()) else None


@dataclass(frozen=True)
class MergedLoRA:
    """The merged LoRA and how far it is from the exact weighted sum.

    Attributes:
        state: ADE-layout tensors, ready for ``save_motion_lora``.
        metadata: the sources (file, weight, rank, family), the mode and the error.
        layer_errors: ``{layer: ||written - exact|| / ||exact||}`` (Frobenius norms of the updates), measured
            on the written tensors, so fp16 rounding is included.
        error: the same over all layers together (``sqrt(sum residual^2) / sqrt(sum exact^2)``).
        rank: the target rank (None for exact).
    """

    state: dict[str, torch.Tensor]
    metadata: dict[str, object]
    layer_errors: dict[str, float]
    error: float
    rank: int | None

    @property
    def mode(self) -> str:
        return "exact" if self.rank is None else "compressed"

    def summary(self, worst: int = 3) -> str:
        """A few lines: mode, layers, ranks, overall and worst-layer relative error."""
        ranks = sorted({t.shape[0] for k, t in self.state.items() if k.endswith(".down.weight")})
        rank_text = str(ranks[0]) if len(ranks) == 1 else f"{ranks[0]}..{ranks[-1]}"
        sources = ", ".join(f"{s['file']} x {s['weight']:g}" for s in self.metadata["merged_from"])
        lines = [f"{self.mode} merge of {sources}",
                 f"{len(self.layer_errors)} layers, rank {rank_text}",
                 f"relative error of the merged update: {self.error:.3e} overall"]
        for module, value in sorted(self.layer_errors.items(), key=lambda kv: -kv[1])[:worst]:
            lines.append(f"  {value:.3e}  {module}")
        return "\n".join(lines)


def _check_weight(name: str, weight: float) -> float:
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
        raise SMAInputError(f"the weight of {name} must be a finite number, got {weight!r}.")
    return float(weight)


def _check_compatible(sources: Sequence[LoRASource]) -> None:
    """Refuse sources of different families or with different shapes for the same layer."""
    known = {s.name: s.family for s in sources if s.family is not None}
    if len(set(known.values())) > 1:
        listed = ", ".join(f"{name} ({family})" for name, family in known.items())
        raise SMAInputError(
            f"these motion LoRAs were trained on different motion-module families: {listed}. A LoRA only fits the "
            "family it was trained on (e.g. a v2 LoRA onto a v3 one); merge LoRAs of one family.")
    shapes: dict[str, tuple[str, tuple[int, int]]] = {}
    for source in sources:
        for module, (down, up) in source.pairs().items():
            size = (up.shape[0], down.shape[1])
            first = shapes.setdefault(module, (source.name, size))
            if first[1] != size:
                raise SMAInputError(
                    f"layer {module!r} is {first[1][0]} x {first[1][1]} in {first[0]} but {size[0]} x {size[1]} in "
                    f"{source.name}: the LoRAs are for different model sizes.")


def _stacked(entries: list[tuple[float, torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(up [out, R], down [R, in])`` in float64 whose product is ``sum w * up @ down``."""
    up = torch.cat([w * u.double() for w, _, u in entries], dim=1)
    down = torch.cat([d.double() for _, d, _ in entries], dim=0)
    return up, down


def _truncated(up: torch.Tensor, down: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Best rank-``rank`` factors of ``up @ down`` (``up [out, R]``, ``down [R, in]``) by QR + SVD of an R x R core.

    The singular values are split evenly: ``up' = Q_u P sqrt(S)``, ``down' = sqrt(S) V^T Q_d^T``.
    """
    q_up, r_up = torch.linalg.qr(up)  # [out, R'], [R', R]
    q_down, r_down = torch.linalg.qr(down.T)  # [in, R''], [R'', R]
    p, s, vh = torch.linalg.svd(r_up @ r_down.T, full_matrices=False)
    k = min(rank, s.shape[0])
    root = s[:k].sqrt()
    return (q_up @ p[:, :k]) * root, (root[:, None] * vh[:k]) @ q_down.T


def _gram_inner(up_a: torch.Tensor, down_a: torch.Tensor, up_b: torch.Tensor, down_b: torch.Tensor) -> float:
    """Frobenius inner product ``<up_a @ down_a, up_b @ down_b>`` from ``R x R`` products only."""
    return float(((up_a.T @ up_b) * (down_a @ down_b.T)).sum())


def _residual(exact: tuple[torch.Tensor, torch.Tensor], written: tuple[torch.Tensor, torch.Tensor]) -> tuple[float, float]:
    """``(||written - exact||^2, ||exact||^2)`` of the two updates (float64 factors), never forming them."""
    norm = _gram_inner(*exact, *exact)
    return max(norm - 2 * _gram_inner(*exact, *written) + _gram_inner(*written, *written), 0.0), norm


def merge_sources(sources: Sequence[LoRASource], rank: int | None = None,
                  dtype: torch.dtype = torch.float16) -> MergedLoRA:
    """Merge already loaded LoRAs (see :func:`merge_motion_loras`)."""
    if not sources:
        raise SMAInputError("nothing to merge: give at least one motion LoRA with its weight.")
    if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= MAX_RANK):
        raise SMAInputError(f"the merge rank must be an integer in 1..{MAX_RANK} (or None for an exact merge), "
                            f"got {rank!r}.")
    weights = [_check_weight(s.name, s.weight) for s in sources]
    _check_compatible(sources)
    layers: dict[str, list[tuple[float, torch.Tensor, torch.Tensor]]] = {}
    for source, weight in zip(sources, weights):
        for module, (down, up) in source.pairs().items():
            layers.setdefault(module, []).append((weight, down, up))
    state: dict[str, torch.Tensor] = {}
    errors: dict[str, float] = {}
    residual_sq = total_sq = 0.0
    for module in sorted(layers):
        exact_up, exact_down = _stacked(layers[module])
        up, down = (exact_up, exact_down) if rank is None else _truncated(exact_up, exact_down, rank)
        written_up, written_down = up.to(dtype), down.to(dtype)
        residual, norm = _residual((exact_up, exact_down), (written_up.double(), written_down.double()))
        errors[module] = math.sqrt(residual / norm) if norm > 0 else 0.0
        residual_sq, total_sq = residual_sq + residual, total_sq + norm
        state[ade_lora_key(module, "down")] = written_down.contiguous()
        state[ade_lora_key(module, "up")] = written_up.contiguous()
    error = math.sqrt(residual_sq / total_sq) if total_sq > 0 else 0.0
    return MergedLoRA(state=state, metadata=_metadata(sources, weights, rank, error), layer_errors=errors,
                      error=error, rank=rank)


def _metadata(sources: Sequence[LoRASource], weights: list[float], rank: int | None, error: float) -> dict[str, object]:
    """The merged file's metadata: its sources, the mode and error, and the facts all sources share."""
    listed = []
    for source, weight in zip(sources, weights):
        ranks = {d.shape[0] for d, _ in source.pairs().values()}
        entry: dict[str, object] = {"file": source.name, "weight": weight,
                                    "rank": ranks.pop() if len(ranks) == 1 else "mixed"}
        for key in ("family", "motion_module", "steps", "steps_done", "sma_mode"):
            if key in source.metadata:
                entry[key] = source.metadata[key]
        listed.append(entry)
    out: dict[str, object] = {"merged_from": listed, "merge_mode": "exact" if rank is None else "compressed",
                              "merge_error": error}
    if rank is not None:
        out["merge_rank"] = rank
    family = next((s.family for s in sources if s.family is not None), None)
    if family is not None:
        out["family"] = family
    for key in ("base", "motion_module", "frames", "width", "height"):
        values = {str(s.metadata.get(key)) for s in sources}
        if len(values) == 1 and key in sources[0].metadata:
            out[key] = sources[0].metadata[key]
    return out


def merge_motion_loras(sources: Sequence[tuple[str | os.PathLike, float]], rank: int | None = None,
                       dtype: torch.dtype = torch.float16) -> MergedLoRA:
    """Merge motion LoRA files into one: ``sum_i weight_i * up_i @ down_i`` per layer.

    Args:
        sources: ``[(path, weight), ...]``; files of any layout ``load_motion_lora`` reads. A weight of 1
            keeps a LoRA as trained; negative weights subtract a motion.
        rank: None for the exact merge (ranks concatenated); an integer for a truncated-SVD merge to that
            rank per layer (at most the layer's total rank).
        dtype: dtype of the written tensors (fp16 as ADE's files; fp32 for lossless intermediates).

    Returns:
        A :class:`MergedLoRA`; write it with ``save_motion_lora(path, merged.state, merged.metadata)``.

    Raises:
        SMAInputError: no sources, unreadable files, a bad weight or rank, mixed families or layer sizes.
    """
    loaded = []
    for item in sources:
        try:
            path, weight = item
        except (TypeError, ValueError):
            raise SMAInputError(f"each source must be (path, weight), got {item!r}.") from None
        state, metadata = load_motion_lora(path)
        loaded.append(LoRASource(name=Path(path).name, state=state, weight=weight, metadata=metadata))
    return merge_sources(loaded, rank, dtype)
