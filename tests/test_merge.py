"""Merging motion LoRAs: exact (concatenated ranks) and SVD-compressed, refusals, the file, the CLI."""
from __future__ import annotations

import functools
import math

import pytest
import torch

from sma.cli import main
from sma.errors import SMAInputError
from sma.lora import (
    LoRAConfig,
    add_motion_lora,
    export_motion_lora,
    load_motion_lora,
    merge_motion_loras,
    save_motion_lora,
)
from sma.lora.keys import ade_lora_key, parse_lora_key
from sma.lora.merge import LoRASource, merge_sources
from sma.models.build import tiny_motion_unet

RANK = 4


@functools.cache
def layer_shapes(family: str, targets: tuple[str, ...]) -> dict[str, tuple[int, int]]:
    """``{original-naming layer: (out, in)}`` of a tiny model's motion LoRA (one model built per layout)."""
    model = tiny_motion_unet(family)
    add_motion_lora(model, LoRAConfig(rank=1, targets=targets))
    state = export_motion_lora(model)
    return {p.module: (state[k.replace(".down.weight", ".up.weight")].shape[0], t.shape[1])
            for k, t in state.items() if (p := parse_lora_key(k)).role == "down"}


def lora_state(family: str = "v3", seed: int = 1, rank: int = RANK, shared: dict | None = None,
               targets=("attention",)) -> dict[str, torch.Tensor]:
    """A random fp16 ADE LoRA for a tiny model; with ``shared`` (layer -> (up, down)) the update is that
    plus a part of its own (LoRAs of the same motion, trained with different settings)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for module, (rows, cols) in layer_shapes(family, tuple(targets)).items():
        up = torch.randn(rows, rank, generator=generator) * 0.2
        down = torch.randn(rank, cols, generator=generator) / math.sqrt(cols)
        if shared is not None:
            base_up, base_down = shared.setdefault(module, (up, down))
            up, down = base_up + 0.3 * up, base_down + 0.3 * down
        state[ade_lora_key(module, "down")] = down.half()
        state[ade_lora_key(module, "up")] = up.half()
    return state


def deltas(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``{layer: up @ down}`` in float64."""
    out = {}
    for key, down in state.items():
        parsed = parse_lora_key(key)
        if parsed.role == "down":
            out[parsed.module] = state[key.replace(".down.weight", ".up.weight")].double() @ down.double()
    return out


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.fixture()
def two_files(tmp_path):
    a = save_motion_lora(tmp_path / "a.safetensors", lora_state(seed=1), {"family": "v3", "steps": 300})
    b = save_motion_lora(tmp_path / "b.safetensors", lora_state(seed=2), {"family": "v3", "steps": 500})
    return a, b


def test_exact_merge_is_the_weighted_sum_to_fp16_precision(two_files, tmp_path):
    a, b = two_files
    merged = merge_motion_loras([(a, 0.7), (b, -0.5)])
    da, db, dm = deltas(load_motion_lora(a)[0]), deltas(load_motion_lora(b)[0]), deltas(merged.state)
    assert set(dm) == set(da) and len(dm) == 160
    errors = {m: relative(dm[m], 0.7 * da[m] - 0.5 * db[m]) for m in dm}
    assert max(errors.values()) < 1e-3  # fp16 rounding of the weighted up only
    assert merged.error == pytest.approx(math.sqrt(sum((dm[m] - 0.7 * da[m] + 0.5 * db[m]).norm() ** 2 for m in dm)
                                                   / sum((0.7 * da[m] - 0.5 * db[m]).norm() ** 2 for m in dm)), rel=1e-6)
    assert merged.layer_errors == pytest.approx(errors, rel=1e-6)
    assert all(t.dtype == torch.float16 for t in merged.state.values())
    assert {t.shape[0] for k, t in merged.state.items() if k.endswith(".down.weight")} == {2 * RANK}
    print(f"\nexact merge: relative error {merged.error:.2e} overall, {max(errors.values()):.2e} worst layer")
    # the file is ADE's layout, its metadata lists the sources
    out = save_motion_lora(tmp_path / "c.safetensors", merged.state, merged.metadata)
    state, metadata = load_motion_lora(out)
    assert set(state) == set(merged.state)
    assert metadata["merge_mode"] == "exact" and metadata["family"] == "v3"
    assert [(s["file"], s["weight"], s["rank"], s["steps"]) for s in metadata["merged_from"]] == [
        ("a.safetensors", 0.7, RANK, 300), ("b.safetensors", -0.5, RANK, 500)]


def test_compressed_merge_is_the_best_rank_k_approximation_and_reports_its_error():
    shared: dict = {}
    sources = [LoRASource(f"{i}.safetensors", lora_state(seed=i, shared=shared), w, {"family": "v3"})
               for i, w in ((1, 0.6), (2, 0.4), (3, 0.5))]
    each = [(s.weight, deltas(dict(s.state))) for s in sources]
    exact = {m: sum(w * d[m] for w, d in each) for m in each[0][1]}
    for rank, bound in ((RANK, 0.15), (2, 0.8)):
        merged = merge_sources(sources, rank=rank)
        assert {t.shape[0] for k, t in merged.state.items() if k.endswith(".down.weight")} == {rank}
        got = deltas(merged.state)
        for module, target in exact.items():
            values = torch.linalg.svdvals(target)
            optimum = float(values[rank:].norm() / values.norm())  # Eckart-Young
            measured = relative(got[module], target)
            assert merged.layer_errors[module] == pytest.approx(measured, rel=1e-6)
            assert optimum <= measured < optimum + 1e-3, (module, optimum, measured)
        assert 0.01 < merged.error < bound
        print(f"\ncompressed 3 x rank {RANK} -> rank {rank}: relative error {merged.error:.3e} overall, "
              f"{max(merged.layer_errors.values()):.3e} worst layer")
    # a target rank at or above the total rank loses nothing but fp16 rounding
    assert merge_sources(sources, rank=3 * RANK).error < 1e-3


def test_layers_of_one_source_only_get_that_sources_update():
    a = LoRASource("a", lora_state(seed=1, targets=("attention", "ff")), 0.5)
    b = LoRASource("b", lora_state(seed=2), 1.0)
    merged = merge_sources([a, b])
    da, db, dm = deltas(dict(a.state)), deltas(dict(b.state)), deltas(merged.state)
    ff = [m for m in dm if m.endswith("ff.net.2")]
    assert ff and set(dm) == set(da) and set(db) < set(dm)
    assert all(relative(dm[m], 0.5 * da[m]) < 1e-3 for m in ff)
    assert all(relative(dm[m], 0.5 * da[m] + db[m]) < 1e-3 for m in db)


def test_mixed_families_and_sizes_are_refused():
    v2 = LoRASource("v2.safetensors", lora_state("v2"), 1.0)  # mid-block layers, no family metadata
    v3 = LoRASource("v3.safetensors", lora_state("v3"), 1.0, {"family": "v3"})
    assert v2.family == "v2"
    with pytest.raises(SMAInputError, match=r"different motion-module families: v2.safetensors \(v2\), v3.safetensors \(v3\)"):
        merge_sources([v2, v3])
    v1 = LoRASource("v1.safetensors", lora_state("v3"), 1.0, {"family": "v1"})
    with pytest.raises(SMAInputError, match="v1.safetensors \\(v1\\)"):
        merge_sources([v3, v1])
    wide = {k: torch.cat([t, t], dim=1 if k.endswith(".down.weight") else 0) for k, t in lora_state().items()}
    with pytest.raises(SMAInputError, match="different model sizes"):
        merge_sources([v3, LoRASource("wide", wide, 1.0)])
    for rank in (0, 2000, 1.5):
        with pytest.raises(SMAInputError, match="merge rank"):
            merge_sources([v3], rank=rank)
    with pytest.raises(SMAInputError, match="finite number"):
        merge_sources([LoRASource("x", v3.state, float("nan"))])
    with pytest.raises(SMAInputError, match="at least one"):
        merge_sources([])


def test_cli_merge_writes_the_file_and_reports_the_error(two_files, tmp_path, capsys):
    a, b = two_files
    out = tmp_path / "merged.safetensors"
    assert main(["merge", f"{a}:0.7", f"{b}:0.5", "--out", str(out), "--rank", "3"]) == 0
    printed = capsys.readouterr().out
    state, metadata = load_motion_lora(out)
    assert metadata["merge_mode"] == "compressed" and metadata["merge_rank"] == 3
    assert f"{metadata['merge_error']:.3e} overall" in printed and "wrote" in printed
    assert all(t.shape[0] == 3 for k, t in state.items() if k.endswith(".down.weight"))
    assert main(["merge", str(a), "--out", str(tmp_path / "same.safetensors")]) == 0  # weight 1 by default
    assert load_motion_lora(tmp_path / "same.safetensors")[1]["merged_from"][0]["weight"] == 1.0
    v2 = save_motion_lora(tmp_path / "v2.safetensors", lora_state("v2"), {"family": "v2"})
    assert main(["merge", f"{a}:1", f"{v2}:1", "--out", str(tmp_path / "bad.safetensors")]) == 2
    assert "different motion-module families" in capsys.readouterr().err
    assert not (tmp_path / "bad.safetensors").exists()
    assert main(["merge", f"{a}:1", "--out", str(a)]) == 2
