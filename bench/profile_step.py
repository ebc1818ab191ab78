"""Where the time of a training step goes on the CPU: ``torch.profiler`` over steps of the toy recipe (the demo's
settings on the toy base) or of a small full-size SD1.5 + v3 step, broken down by phase, with operation counts.

    python -m bench.profile_step [--model toy|full] [--steps 20] [--warmup 3] [--threads 1] [--out DIR]

Phases are ``record_function`` regions the bench puts around the trainer's own methods, so nothing in the pack
changes: the spatial pass and the temporal pass (each forward + backward), inside the temporal pass the SMA loss's
forward, every LoRA adapter's forward (both passes), and the optimizer step (clipping included: it runs between
the passes and the update). ``other`` is the step's wall time outside those regions: drawing the batch, the
one device sync that reads the losses, and the loop's Python. Operation counts are per step: every ``aten::``
call (nested ones included) and every backward node autograd evaluated; ``aten_self_ms_per_step`` is the time spent
inside those calls themselves (their kernels), so the step's time beyond it is dispatch, autograd and Python.

``unprofiled_ms_per_step`` is the median step time of the warm-up steps after the first (the profiler itself
slows the profiled steps). Prints one JSON object with the mean per step and writes it (and the profiler's top operations) to
``--out/profile_<model>.json``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import platform
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.autograd.profiler import record_function
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # also runs as python bench/profile_step.py

from sma.atomic import atomic_write_path  # noqa: E402
from sma.lora.adapters import LoRAAdapter  # noqa: E402
from sma.training import TrainCallbacks, Trainer  # noqa: E402

PHASES = ("spatial_pass", "temporal_pass", "sma_forward", "lora_forward", "optimizer")
PREFIX = "phase::"


def toy_trainer(steps: int) -> Trainer:
    """The demo's recipe: its task and settings on the shipped toy base."""
    from sma.toyworld import recipe

    return recipe.toy_trainer(recipe.demo_task(0), recipe.toy_train_config(steps, 0))


def full_trainer(steps: int, frames: int, size: int) -> Trainer:
    """A full-size random-weight SD1.5 + v3 model at ``frames`` x ``size`` px, fp32, the pack's checkpointing."""
    from dataclasses import replace

    from bench.bench_train import build_model
    from bench.settings import HEADLINE, make_clip, train_config
    from sma.models.build import make_noise_scheduler

    row = replace(HEADLINE, frames=frames, size=size, precision="fp32")
    model = build_model("full", torch.device("cpu"), torch.float32)
    return Trainer(model, [make_clip(model, frames, size // 8)], make_noise_scheduler(), train_config(row, steps),
                   device="cpu")


@contextlib.contextmanager
def labelled_phases(trainer: Trainer) -> Iterator[None]:
    """``record_function`` regions around the trainer's passes, its SMA loss, every LoRA adapter and the
    optimizer step, removed afterwards."""
    def wrap(name: str, method):
        def run(*args, **kwargs):
            with record_function(PREFIX + name):
                return method(*args, **kwargs)
        return run

    for name in ("spatial_pass", "temporal_pass"):
        setattr(trainer, f"_{name}", wrap(name, getattr(trainer, f"_{name}")))
    adapter_forward = LoRAAdapter.forward
    LoRAAdapter.forward = wrap("lora_forward", adapter_forward)
    regions: list[Any] = []

    def enter(name: str):
        def hook(*_):
            regions.append(record_function(PREFIX + name).__enter__())
        return hook

    def leave(*_):
        regions.pop().__exit__(None, None, None)

    handles = [register_optimizer_step_pre_hook(enter("optimizer")), register_optimizer_step_post_hook(leave)]
    if trainer.sma_loss is not None:
        handles += [trainer.sma_loss.register_forward_pre_hook(enter("sma_forward")),
                    trainer.sma_loss.register_forward_hook(leave)]
    try:
        yield
    finally:
        LoRAAdapter.forward = adapter_forward
        for handle in handles:
            handle.remove()
        for name in ("spatial_pass", "temporal_pass"):
            trainer.__dict__.pop(f"_{name}", None)


def profile(trainer: Trainer, warmup: int, steps: int) -> dict[str, Any]:
    """Run ``warmup`` unprofiled steps, then ``steps`` profiled ones; returns the per-step breakdown."""
    walls: list[float] = []
    unprofiled: list[float] = []
    profiler: list[torch.profiler.profile] = []

    def on_step(report) -> None:
        if 1 < report.step <= warmup:  # the first step pays one-off costs
            unprofiled.append(report.seconds)
        if report.step == warmup:  # the profiled steps start now
            profiler.append(torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]))
            profiler[0].__enter__()
            walls.append(time.perf_counter())
        elif report.step == warmup + steps:
            walls.append(time.perf_counter())
            profiler[0].__exit__(None, None, None)

    with labelled_phases(trainer):
        trainer.run(TrainCallbacks(on_step=on_step))
    wall = (walls[1] - walls[0]) / steps
    events = profiler[0].key_averages()
    phase_ms = {name: 0.0 for name in PHASES}
    aten_calls = backward_nodes = 0
    aten_self_ms = 0.0
    for event in events:
        if event.key.startswith(PREFIX):
            phase_ms[event.key[len(PREFIX):]] += event.cpu_time_total / 1000 / steps
        elif event.key.startswith("aten::"):
            aten_calls += event.count
            aten_self_ms += event.self_cpu_time_total / 1000 / steps
        elif event.key.startswith("autograd::engine::evaluate_function"):
            backward_nodes += event.count
    outside = wall * 1000 - phase_ms["spatial_pass"] - phase_ms["temporal_pass"] - phase_ms["optimizer"]
    top = sorted((e for e in events if e.key.startswith("aten::")), key=lambda e: -e.self_cpu_time_total)[:15]
    return {
        "unprofiled_ms_per_step": round(1000 * sorted(unprofiled)[len(unprofiled) // 2], 1) if unprofiled else None,
        "wall_ms_per_step": round(wall * 1000, 1),
        "phases_ms_per_step": {name: round(ms, 1) for name, ms in phase_ms.items()} | {"other": round(outside, 1)},
        "aten_calls_per_step": round(aten_calls / steps),
        "aten_self_ms_per_step": round(aten_self_ms, 1),
        "backward_nodes_per_step": round(backward_nodes / steps),
        "lora_adapter_calls_per_step": round(next((e.count for e in events if e.key == PREFIX + "lora_forward"), 0)
                                             / steps),
        "top_self_cpu_ms_per_step": {e.key: round(e.self_cpu_time_total / 1000 / steps, 2) for e in top},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("toy", "full"), default="toy")
    parser.add_argument("--steps", type=int, default=20, help="profiled steps")
    parser.add_argument("--warmup", type=int, default=3, help="steps run before profiling (>= 1)")
    parser.add_argument("--threads", type=int, default=1, help="intra-op CPU threads")
    parser.add_argument("--frames", type=int, default=8, help="frames of the full-size step")
    parser.add_argument("--size", type=int, default=256, help="pixel side of the full-size step")
    parser.add_argument("--out", default="results/profile")
    args = parser.parse_args(argv)
    if args.warmup < 1 or args.steps < 1:
        parser.error("--warmup and --steps must be 1 or more")
    torch.set_num_threads(args.threads)
    total = args.warmup + args.steps
    trainer = toy_trainer(total) if args.model == "toy" else full_trainer(total, args.frames, args.size)
    result = {"model": args.model, "steps": args.steps, "warmup": args.warmup, "threads": args.threads,
              "torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine()}
    if args.model == "full":
        result |= {"frames": args.frames, "size": args.size}
    result |= profile(trainer, args.warmup, args.steps)
    print(json.dumps(result))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write_path(out / f"profile_{args.model}.json") as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
