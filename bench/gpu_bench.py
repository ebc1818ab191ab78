"""Measure motion-LoRA training on a real GPU: seconds per step, peak memory and the SMA share of a step.

    python -m bench.gpu_bench --out results/gpu [--budget-s 240] [--limit N] [--rows headline,bf16,...]
                              [--families v3,v2] [--steps 3] [--warmup 1] [--device cuda] [--model full|tiny]

One command, nothing downloaded: a random-weight SD1.5 UNet and AnimateDiff motion module with the real
layout are built from the shipped configs, and the pack's own :class:`~sma.training.Trainer` trains on a
random clip. First a smoke test runs the trainer's CUDA path for a few steps (fp16 frozen weights, fp32
LoRA, autocast, GradScaler, checkpointing inside the motion modules) and checks each of those parts.
Then the configurations of :func:`bench.settings.grid` run in priority order until ``--budget-s`` is spent; a
configuration that fails (out of memory, an error) is recorded with its traceback and the rest go on.

Per configuration:

- ``seconds_per_step``: median wall time between consecutive optimizer steps after ``--warmup`` steps,
  the device synchronised at each step; the spatial path runs on every step (``spatial_skip_prob`` 0),
  so it is the cost of a step that trains both LoRAs.
- ``peak_allocated_gib`` / ``peak_reserved_gib``: ``torch.cuda.max_memory_allocated`` /
  ``max_memory_reserved`` over the run, model weights included (what a card must hold; the CUDA
  context, about 0.3-0.5 GiB, comes on top and is reported once as ``context_gib`` when NVML can see it).
- ``sma_ms`` / ``sma_share_pct``: the SMA loss (forward + backward, at the configuration's shape) timed
  alone with CUDA events, and its share of the step.
- ``estimate_gib`` / ``estimate_error_pct`` (with ``--estimate``): the estimator's peak for the same
  settings (``bench/estimate.py``) and its error against ``peak_allocated_gib``.

Writes ``results.jsonl`` (one JSON object per line: ``environment``, ``smoke``, ``run``, ``skipped``)
and ``table.md`` (the Markdown table, also printed) under ``--out``.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # also runs as python bench/gpu_bench.py

from bench.bench_train import build_model  # noqa: E402

from sma.loss import tweedie_estimate  # noqa: E402
from sma.models.build import make_noise_scheduler  # noqa: E402
from bench.estimate import estimate_setting  # noqa: E402
from bench.settings import GIB, Setting, clean_model, grid, make_clip, train_config  # noqa: E402
from sma.training import StepReport, TrainCallbacks, Trainer, memory  # noqa: E402


# --- timing and memory ---------------------------------------------------------------------------------


class Clock:
    """Wall-clock stamps and CUDA-event intervals that also work on the CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def milliseconds(self, work: Callable[[], Any], repeats: int = 5, warmup: int = 2) -> float:
        """Median duration of ``work()`` in ms (CUDA events on a GPU, perf_counter elsewhere)."""
        for _ in range(warmup):
            work()
        times = []
        for _ in range(repeats):
            if self.device.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                work()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end))
            else:
                began = time.perf_counter()
                work()
                times.append(1000 * (time.perf_counter() - began))
        return statistics.median(times)


def reset_peaks(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def memory_now(device: torch.device) -> dict[str, float]:
    """Allocated / reserved GiB now and their peaks since the last reset (CUDA; empty elsewhere)."""
    if device.type != "cuda":
        return {}
    stats = torch.cuda.memory_stats(device)
    return {"allocated_gib": torch.cuda.memory_allocated(device) / GIB,
            "peak_allocated_gib": torch.cuda.max_memory_allocated(device) / GIB,
            "peak_reserved_gib": torch.cuda.max_memory_reserved(device) / GIB,
            "alloc_retries": int(stats.get("num_alloc_retries", 0)), "ooms": int(stats.get("num_ooms", 0))}


def context_gib(device: torch.device) -> float | None:
    """Device memory used by this process beyond what torch reserved (the CUDA context), if NVML answers."""
    if device.type != "cuda":
        return None
    try:
        free, total = torch.cuda.mem_get_info(device)
        used = (total - free) / GIB
        return round(used - torch.cuda.memory_reserved(device) / GIB, 3)
    except RuntimeError:
        return None


# --- runs ----------------------------------------------------------------------------------------------


def sma_milliseconds(trainer: Trainer, frames: int, latent: int, clock: Clock) -> float | None:
    """The SMA loss alone (Tweedie estimate, loss, backward) at the run's shape, in ms."""
    if trainer.sma_loss is None:
        return None
    device = trainer.device
    generator = torch.Generator().manual_seed(1)
    shape = (1, frames, 4, latent, latent)
    x_t, z0 = (torch.randn(shape, generator=generator).to(device) for _ in range(2))
    pred = torch.randn(shape, generator=generator).to(device).requires_grad_(True)
    abar = trainer.alphas_cumprod[torch.tensor([500], device=device)]

    def work() -> None:
        z0_hat = tweedie_estimate(x_t, pred, abar, trainer.prediction_type)
        trainer.sma_loss(z0_hat, z0, abar).total.backward()
        pred.grad = None

    with torch.enable_grad():
        return clock.milliseconds(work)


def run_setting(model: torch.nn.Module, row: Setting, device: torch.device, args: argparse.Namespace,
                clock: Clock) -> dict[str, Any]:
    """Train ``warmup + steps`` steps with ``row``'s settings; timings and peaks."""
    latent = max(1, row.size // args.px_divisor // 8)
    clip = make_clip(model, row.frames, latent)
    stamps: list[float] = []

    def on_step(report: StepReport) -> None:
        clock.sync()
        stamps.append(time.perf_counter())
        if not all(map(_finite, report.losses.values())):
            raise RuntimeError(f"non-finite loss at step {report.step}: {report.losses}")

    clean_model(model)
    if row.checkpointing == "diffusers":
        model.enable_gradient_checkpointing()
    trainer = Trainer(model, [clip], make_noise_scheduler(), train_config(row, args.warmup + args.steps),
                      device=device)
    reset_peaks(device)
    weights_gib = torch.cuda.memory_allocated(device) / GIB if device.type == "cuda" else None
    clock.sync()
    began = time.perf_counter()
    try:
        trainer.run(TrainCallbacks(on_step=on_step))
        peaks = memory_now(device)
        sma_ms = sma_milliseconds(trainer, row.frames, latent, clock)
    finally:
        clean_model(model)
    times = [b - a for a, b in zip(stamps[args.warmup - 1:], stamps[args.warmup:])]
    step_s = statistics.median(times)
    line = {"kind": "run", **asdict(row), "latent": latent, "device": str(device),
            "steps_timed": len(times), "seconds_per_step": round(step_s, 4),
            "min_seconds_per_step": round(min(times), 4),
            "first_step_s": round(stamps[0] - began, 3), "weights_gib": _round(weights_gib),
            "sma_ms": _round(sma_ms, 2),
            "sma_share_pct": round(100 * sma_ms / (1000 * step_s), 2) if sma_ms is not None else None,
            "grad_scale": float(trainer.grad_scaler.get_scale()) if trainer.grad_scaler.is_enabled() else None}
    line.update({k: _round(v) for k, v in peaks.items() if k != "allocated_gib"})
    return line


def _finite(value: float) -> bool:
    return value == value and abs(value) != float("inf")


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(float(value), digits)


# --- the smoke test of the CUDA path -------------------------------------------------------------------


@contextlib.contextmanager
def counting_checkpoints() -> Iterator[list[int]]:
    """Count calls of the pack's checkpoint wrapper (proves motion modules run checkpointed)."""
    calls = [0]
    original = memory.checkpoint

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return original(*args, **kwargs)

    memory.checkpoint = counted
    try:
        yield calls
    finally:
        memory.checkpoint = original


def smoke(model: torch.nn.Module, device: torch.device, precision: str, args: argparse.Namespace) -> dict[str, Any]:
    """Train 3 steps with the real CUDA path and check each part of it; ``ok`` False lists what failed."""
    row = Setting("smoke", frames=8, size=256, precision=precision)
    clip = make_clip(model, row.frames, max(1, row.size // args.px_divisor // 8))
    checks: dict[str, Any] = {}
    failures: list[str] = []
    motion_dtypes: list[torch.dtype] = []
    losses: list[dict[str, float]] = []
    clean_model(model)
    trainer = Trainer(model, [clip], make_noise_scheduler(), train_config(row, 3), device=device)
    probe = next(m for n, m in model.named_modules() if n.endswith("motion_modules.0.transformer_blocks.0.attn1.to_q"))
    hook = probe.register_forward_hook(lambda module, inputs, output: motion_dtypes.append(output.dtype))

    def on_step(report: StepReport) -> None:
        losses.append(report.losses)
        if report.step == 1:
            lora = list(trainer.named_lora.values())
            checks["lora_dtypes"] = sorted({str(p.dtype) for p in lora})
            checks["lora_devices"] = sorted({p.device.type for p in lora})
            checks["lora_grad_dtypes"] = sorted({str(p.grad.dtype) for p in lora if p.grad is not None})
            checks["frozen_dtypes"] = sorted({str(p.dtype) for p in model.parameters()
                                              if not p.requires_grad and p.is_floating_point()})
            checks["frozen_devices"] = sorted({p.device.type for p in model.parameters()})

    try:
        with counting_checkpoints() as calls:
            result = trainer.run(TrainCallbacks(on_step=on_step))
        checks["checkpoint_calls"] = calls[0]
        checks["motion_attention_dtypes"] = sorted({str(d) for d in motion_dtypes})
        checks["grad_scaler"] = trainer.grad_scaler.is_enabled()
        checks["grad_scale"] = float(trainer.grad_scaler.get_scale()) if trainer.grad_scaler.is_enabled() else None
        checks["losses"] = losses
        up_norm = sum(float(t.float().norm()) for k, t in result.lora_state.items() if ".up." in k or "lora_up" in k)
        checks["motion_lora_up_norm"] = up_norm
    finally:
        hook.remove()
        clean_model(model)
    weight = trainer.precision.weight_dtype
    expect = {
        "lora weights are fp32": checks.get("lora_dtypes") == ["torch.float32"],
        "lora gradients are fp32": checks.get("lora_grad_dtypes") == ["torch.float32"],
        f"frozen weights are {weight}": checks.get("frozen_dtypes") == [str(weight)],
        f"every weight on {device.type}": checks.get("frozen_devices") == [device.type] == checks.get("lora_devices"),
        f"motion attention ran in {weight} (autocast)": checks.get("motion_attention_dtypes") == [str(weight)],
        "motion modules checkpointed": checks.get("checkpoint_calls", 0) > 0,
        "GradScaler on for fp16 only": checks.get("grad_scaler") == (weight == torch.float16),
        "losses finite": bool(losses) and all(_finite(v) for step in losses for v in step.values()),
        "motion LoRA learned (up weights moved from 0)": checks.get("motion_lora_up_norm", 0.0) > 0.0,
    }
    failures = [name for name, ok in expect.items() if not ok]
    return {"kind": "smoke", "precision": precision, "ok": not failures, "failed": failures,
            "passed": [name for name, ok in expect.items() if ok], **checks}


# --- environment, table, main --------------------------------------------------------------------------


def environment(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {"kind": "environment", "torch": torch.__version__, "python": platform.python_version(),
                            "device": str(device), "alloc_conf": os.environ.get("PYTORCH_CUDA_ALLOC_CONF")}
    try:
        import diffusers

        info["diffusers"] = diffusers.__version__
    except ImportError:
        info["diffusers"] = None
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(name=torch.cuda.get_device_name(device), capability=f"{props.major}.{props.minor}",
                    total_gib=round(props.total_memory / GIB, 2), cuda=torch.version.cuda,
                    hip=getattr(torch.version, "hip", None), bf16=torch.cuda.is_bf16_supported(),
                    flash_sdp=torch.backends.cuda.flash_sdp_enabled(),
                    mem_efficient_sdp=torch.backends.cuda.mem_efficient_sdp_enabled(),
                    tf32_matmul=torch.backends.cuda.matmul.allow_tf32, cudnn=torch.backends.cudnn.version())
    else:
        info["name"] = platform.processor() or platform.machine()
        info["threads"] = torch.get_num_threads()
    return info


COLUMNS = ("name", "family", "frames", "size", "precision", "checkpointing", "spatial", "sma", "rank", "optimizer",
           "seconds_per_step", "peak_allocated_gib", "peak_reserved_gib", "sma_ms", "sma_share_pct", "estimate_gib",
           "estimate_error_pct", "status")


def table(env: dict[str, Any], lines: list[dict[str, Any]]) -> str:
    """Markdown table of the runs (measured), errors and skipped configurations."""
    head = (f"Measured on {env.get('name')} ({env['device']}, torch {env['torch']}"
            + (f", CUDA {env['cuda']}" if env.get("cuda") else "") + f", diffusers {env.get('diffusers')}"
            + (f", PYTORCH_CUDA_ALLOC_CONF={env['alloc_conf']}" if env.get("alloc_conf") else "") + "); "
            "random-weight SD1.5 + AnimateDiff, one clip, peaks include the weights, not the CUDA context.\n\n")
    rows = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for line in lines:
        if line["kind"] not in ("run", "error", "skipped"):
            continue
        cells = []
        for column in COLUMNS:
            value = line.get(column)
            if column == "status":
                value = "ok" if line["kind"] == "run" else line["kind"] + ": " + line.get("reason", "")[:80]
            elif isinstance(value, bool):
                value = "on" if value else "off"
            cells.append("" if value is None else str(value).replace("|", "/"))
        rows.append("| " + " | ".join(cells) + " |")
    return head + "\n".join(rows) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for results.jsonl and table.md")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--model", choices=("full", "tiny"), default="full")
    parser.add_argument("--families", default="v3", help="comma list: v3 (first, the main grid), v2")
    parser.add_argument("--budget-s", type=float, default=240.0, help="start no configuration after this many s")
    parser.add_argument("--limit", type=int, default=0, help="run only the first N configurations (0 = all)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per configuration")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (>= 1)")
    parser.add_argument("--px-divisor", type=int, default=0, help="divide pixel sizes by this (default: 8 for tiny)")
    parser.add_argument("--rows", default="", help="comma list of configuration names to run (default: all)")
    parser.add_argument("--smoke-only", action="store_true")
    parser.add_argument("--no-smoke", action="store_true", help="skip the CUDA-path smoke test")
    parser.add_argument("--estimate", action="store_true", help="add bench/estimate.py's peak to each run")
    args = parser.parse_args()
    if args.warmup < 1 or args.steps < 1:
        parser.error("--warmup and --steps must be >= 1")
    args.px_divisor = args.px_divisor or (8 if args.model == "tiny" else 1)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_bench: CUDA is not available in this torch build or on this machine; use --device cpu.")
    args.out.mkdir(parents=True, exist_ok=True)
    log = (args.out / "results.jsonl").open("w")
    lines: list[dict[str, Any]] = []

    def emit(line: dict[str, Any]) -> None:
        lines.append(line)
        log.write(json.dumps(line, default=str) + "\n")
        log.flush()
        print(json.dumps(line, default=str), flush=True)

    started = time.perf_counter()
    env = environment(device)
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    clock = Clock(device)
    predict = estimate_setting if args.estimate else None
    model_family = None
    model = None
    rows = grid(families)
    if args.rows:
        wanted = [name.strip() for name in args.rows.split(",") if name.strip()]
        unknown = sorted(set(wanted) - {row.name for row in rows})
        if unknown:
            parser.error(f"unknown --rows {unknown}; known: {', '.join(row.name for row in rows)}")
        rows = [row for row in rows if row.name in wanted]
    if args.limit:
        rows = rows[:args.limit]
    for index, row in enumerate(rows):
        if index and time.perf_counter() - started > args.budget_s:
            emit({"kind": "skipped", **asdict(row), "reason": f"time budget {args.budget_s:.0f} s spent"})
            continue
        if model_family != row.family:
            model = None
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
            built = time.perf_counter()
            model = build_model(args.model, device, torch.float16, family=row.family)
            model_family = row.family
            env.update({f"build_s_{row.family}": round(time.perf_counter() - built, 1),
                        f"parameters_{row.family}": sum(p.numel() for p in model.parameters()),
                        "context_gib": context_gib(device)})
            if index == 0:
                emit(env)
                for precision in () if args.no_smoke else ("fp16", "bf16"):
                    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
                        continue
                    try:
                        emit(smoke(model, device, precision, args))
                    except Exception as error:  # noqa: BLE001  (report every failure, keep going)
                        emit({"kind": "smoke", "precision": precision, "ok": False, "failed": ["the run raised"],
                              "error": repr(error), "traceback": traceback.format_exc()})
                        print(traceback.format_exc(), file=sys.stderr, flush=True)
                if args.smoke_only:
                    break
        try:
            line = run_setting(model, row, device, args, clock)
        except Exception as error:  # noqa: BLE001  (OOM or a bug: record it, go on with the next one)
            reason = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
            line = {"kind": "error", **asdict(row), "reason": reason,
                    "traceback": traceback.format_exc(), **memory_now(device)}
            print(f"[{row.label()}] failed:\n{traceback.format_exc()}", file=sys.stderr, flush=True)
        if predict is not None and line["kind"] == "run":
            try:
                predicted = predict(asdict(row))
                line["estimate_gib"] = _round(predicted["peak_gib"])
                if line.get("peak_allocated_gib"):
                    error_pct = 100 * (predicted["peak_gib"] / line["peak_allocated_gib"] - 1)
                    line["estimate_error_pct"] = round(error_pct, 1)
            except Exception as error:  # noqa: BLE001
                line["estimate_error"] = repr(error)
        emit(line)
        reset_peaks(device)
    text = table(env, lines)
    smokes = [line for line in lines if line["kind"] == "smoke"]
    text += "\n" + "\n".join(f"Smoke ({s['precision']}): {'OK' if s['ok'] else 'FAILED: ' + ', '.join(s['failed'])}"
                             for s in smokes) + "\n"
    text += f"\nTotal {time.perf_counter() - started:.0f} s.\n"
    (args.out / "table.md").write_text(text)
    log.close()
    print("\n" + text, flush=True)


if __name__ == "__main__":
    main()
