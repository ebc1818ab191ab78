"""Peak memory and FLOPs of one motion-LoRA training step at full size, computed on the CPU without a GPU.

    python -m bench.estimate [--grid default|full] [--families v3,v2] [--only NAMES] [--out DIR]
    python -m bench.estimate --validate               # against a real CPU run at a small size
    python -m bench.estimate --compare results.jsonl  # against bench/gpu_bench.py's measurements

How: the pack's real :class:`~sma.training.Trainer` runs one step on a full-size SD1.5 + AnimateDiff model
whose weights are fake tensors (``torch._subclasses.fake_tensor.FakeTensorMode``: shapes, dtypes and
devices, no data). Three dispatch modes watch it:

- :class:`FakeScalars` keeps small tensors made from no fake input real (random draws, step counters,
  the GradScaler's scale) and answers the scalar reads of fake values (finite checks: finite; loss values,
  norms and flags: 0), so the trainer's control flow runs as on a device;
- :class:`LiveBytes` counts the bytes of every live storage after each operation (sizes rounded up to
  the CUDA caching allocator's 512-byte blocks) and keeps the peak, per phase, with a breakdown into
  weights, LoRA weights, gradients, optimizer state and activations at the peak;
- the same tracker counts FLOPs with ``torch.utils.flop_counter``'s formulas (matmuls, convolutions,
  attention). Not with ``FlopCounterMode`` itself: its module hooks keep activations of checkpointed
  blocks alive (measured: +1.4 GiB at 8 frames x 256 px, the run 3x slower).

The steady-state peak of a step (step 2 on, when the optimizer state exists) is
``max(peak before the optimizer step + optimizer state, peak during the optimizer step)``.

What it cannot see (added as :data:`KERNELS_GIB`, :data:`MARGIN_GIB` and :data:`CONTEXT_GIB` for "on the
card", see docs/performance.md): kernel workspaces and buffers (cuBLAS, cuDNN, attention), the CUDA caching
allocator's fragmentation (reserved - allocated; 0.2-0.5 GiB measured on an H100 up to 10 GiB peaks), and
the CUDA context (0.3-0.6 GiB).
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from torch import nn
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode, unset_fake_temporarily
from torch.multiprocessing.reductions import StorageWeakRef
from torch.optim.optimizer import register_optimizer_step_pre_hook
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map_only
from torch.utils.flop_counter import flop_registry

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # also runs as python bench/estimate.py

from bench.settings import HEADLINE, PORTS, Setting, clean_model, make_clip, train_config  # noqa: E402

from sma.models.build import make_noise_scheduler, use_ade_group_norms  # noqa: E402
from sma.models.config import motion_adapter_config, unet_config  # noqa: E402
from sma.models.sd15 import empty_weights  # noqa: E402
from sma.training import Trainer  # noqa: E402
from sma.training.memory import Precision  # noqa: E402

GIB = 2**30
BLOCK = 512
"""The CUDA caching allocator hands out multiples of 512 bytes."""
KERNELS_GIB = 0.4
"""What CUDA allocated beyond the estimate at 16 frames x 512 px on an H100 (7.25 GiB measured, 6.88 GiB estimated
for the same code): cuBLAS's workspace and kernels' own buffers."""
CONTEXT_GIB = 0.6
"""CUDA context measured on an H100 (CUDA 13, lazy module loading); older cards/drivers: 0.3-0.5 GiB."""
MARGIN_GIB = 0.5
"""Allocator fragmentation (reserved - allocated) measured on an H100: 0.2-0.5 GiB up to 10 GiB peaks."""
SMALL = 4096
"""Tensors made from no fake input stay real up to this many elements (counters, draws, scalars)."""

GPUS: dict[str, float] = {
    "RTX 3090": 35.6,
    "RTX 4090": 165.2,
    "A100": 312.0,
    "H100 SXM": 989.4,
}
"""Peak dense fp16/bf16 tensor-core TFLOPS with fp32 accumulation, what PyTorch's matmuls use (GeForce cards
run fp32 accumulation at half their fp16-accumulate rate)."""
UTILISATION = 0.35


# --- fake tensors that still run the trainer's control flow --------------------------------------------


class FakeScalars(TorchDispatchMode):
    """Run on top of a FakeTensorMode: small real tensors stay real, scalar reads of fake tensors answer.

    Operations with a fake input, or that create a tensor on another device than the CPU (fake CUDA), go to
    the fake mode. Operations without one run for real (the fake mode
    switched off); a factory's result larger than :data:`SMALL` elements becomes fake. Reading a Python
    scalar from a fake tensor (``bool``, ``float``, ``.item()``, ``.tolist()``) gives True for booleans (finite
    checks) and 0 otherwise (loss values, gradient norms, "bad output" flags: all finite and fine).
    """

    def __init__(self, fake: FakeTensorMode) -> None:
        super().__init__()
        self.fake = fake

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = [a for a in tree_flatten((args, kwargs))[0] if isinstance(a, torch.Tensor)]
        device = kwargs.get("device")
        off_cpu = device is not None and torch.device(device).type != "cpu"
        if off_cpu or any(isinstance(a, FakeTensor) for a in tensors):
            if func is torch.ops.aten._local_scalar_dense.default:
                value = args[0]
                return True if value.dtype == torch.bool else (0.0 if value.is_floating_point() else 0)
            return func(*args, **kwargs)
        with unset_fake_temporarily():
            out = func(*args, **kwargs)
        if not tensors:
            out = tree_map_only(torch.Tensor, lambda t: self.fake.from_tensor(t) if t.numel() > SMALL else t, out)
        return out


# --- live-storage accounting ---------------------------------------------------------------------------


def _blocks(nbytes: int) -> int:
    return -(-nbytes // BLOCK) * BLOCK


class LiveBytes(TorchDispatchMode):
    """Bytes of live tensor storages after every operation; the peak, per phase, with a breakdown.

    Works on real and fake tensors alike: each new storage an operation returns is remembered with a
    ``StorageWeakRef``; dead ones are swept when the running total could be a new peak (with a slack of
    ``slack`` of the peak, so the reported peak may be low by at most that share).

    Args:
        baseline: tensors alive before (weights); counted once, never swept.
        classify: called at each new peak; returns ``{category: bytes}`` of what it can name (LoRA
            weights, gradients, optimizer state); the rest of the non-baseline bytes are "activations".
        slack: relative tolerance of the peak (sweeping less often is faster).
    """

    def __init__(self, baseline: list[torch.Tensor], classify: Callable[[], dict[str, int]] | None = None,
                 slack: float = 0.002) -> None:
        super().__init__()
        self.live: dict[int, tuple[StorageWeakRef, int]] = {}
        self.weights = 0
        for t in baseline:
            self._remember(t)
        self.weights = sum(nbytes for _, nbytes in self.live.values())
        self._static = set(self.live)
        self.current = self.weights
        self.phase = "setup"
        self.peaks: dict[str, int] = {}
        self.breakdowns: dict[str, dict[str, int]] = {}
        self.peak_ops: dict[str, str] = {}
        self.classify = classify
        self.slack = slack
        self._sweep_at = self.weights
        self.flops: dict[str, int] = {}
        self.region = ""

    def _remember(self, tensor: torch.Tensor) -> int:
        storage = tensor.untyped_storage()
        key = storage._cdata
        known = self.live.get(key)
        if known is not None and not known[0].expired():
            return 0
        nbytes = _blocks(storage.nbytes())
        self.live[key] = (StorageWeakRef(storage), nbytes)
        return nbytes - (known[1] if known is not None else 0)

    def sweep(self) -> None:
        """Forget dead storages; ``current`` becomes exact."""
        dead = [key for key, (ref, _) in self.live.items() if key not in self._static and ref.expired()]
        for key in dead:
            self.current -= self.live.pop(key)[1]

    def set_phase(self, name: str) -> None:
        self.sweep()
        self.phase = name
        self._sweep_at = self.current  # the next allocation can be this phase's first peak

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        count = flop_registry.get(func.overloadpacket)
        if count is not None:
            key = self.region or self.phase
            self.flops[key] = self.flops.get(key, 0) + int(count(*args, **kwargs, out_val=out))
        added = 0
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.layout == torch.strided:
                added += self._remember(t)
        if added:
            self.current += added
            peak = self.peaks.get(self.phase, 0)
            if self.current > max(peak, self._sweep_at):
                self.sweep()
                self._sweep_at = self.current * (1 + self.slack)
                if self.current > peak:
                    self._new_peak(func)
        return out

    def _new_peak(self, func) -> None:
        self.peaks[self.phase] = self.current
        self.peak_ops[self.phase] = str(func)
        named = self.classify() if self.classify is not None else {}
        extra = self.current - self.weights
        self.breakdowns[self.phase] = {"weights": self.weights, **named,
                                       "activations": extra - sum(named.values())}


# --- the fake model and one estimated step -------------------------------------------------------------


def fake_motion_unet(family: str, dtype: torch.dtype, fake: FakeTensorMode, size: str = "full") -> nn.Module:
    """A ``UNetMotionModel`` of ``family`` whose parameters and buffers are fake tensors of ``dtype`` (CPU).

    Built on the meta device and converted tensor by tensor in the fake mode (``Module.to`` cannot swap
    fake tensors), then given AnimateDiff-Evolved's GroupNorms as the real builder does.
    """
    from diffusers import MotionAdapter, UNet2DConditionModel, UNetMotionModel

    with empty_weights():
        base = UNet2DConditionModel.from_config(unet_config(size))
        adapter = MotionAdapter.from_config(motion_adapter_config(family, size))
        model = UNetMotionModel.from_unet2d(base, adapter, load_weights=False)
    with fake:
        for module in model.modules():
            for name, p in list(module._parameters.items()):
                if p is not None:
                    kind = dtype if p.is_floating_point() else p.dtype
                    module._parameters[name] = nn.Parameter(torch.empty(p.shape, dtype=kind), requires_grad=False)
            for name, b in list(module._buffers.items()):
                if b is not None:
                    module._buffers[name] = torch.empty(b.shape, dtype=dtype if b.is_floating_point() else b.dtype)
    use_ade_group_norms(model, family)
    return model


_MODELS: dict[tuple, tuple[nn.Module, FakeTensorMode]] = {}
_RESULTS: dict[tuple, dict[str, Any]] = {}


def _model(family: str, dtype: torch.dtype, size: str) -> tuple[nn.Module, FakeTensorMode]:
    key = (family, dtype, size)
    if key not in _MODELS:
        _MODELS.clear()
        gc.collect()
        fake = FakeTensorMode(allow_non_fake_inputs=True)
        _MODELS[key] = (fake_motion_unet(family, dtype, fake, size), fake)
    return _MODELS[key]


def _storage_bytes(tensors: Iterator[torch.Tensor]) -> int:
    seen: dict[int, int] = {}
    for t in tensors:
        storage = t.untyped_storage()
        seen[storage._cdata] = _blocks(storage.nbytes())
    return sum(seen.values())


@contextlib.contextmanager
def _phases(trainer: Trainer, live: LiveBytes) -> Iterator[None]:
    """Label the tracker's phases: spatial / temporal pass (forward and backward), optimizer step."""
    def labelled(name: str, method: Callable) -> Callable:
        def run(*args: Any, **kwargs: Any) -> Any:
            live.set_phase(name)
            return method(*args, **kwargs)
        return run

    for name in ("_spatial_pass", "_temporal_pass"):
        if hasattr(trainer, name):
            setattr(trainer, name, labelled(name.strip("_").replace("_pass", ""), getattr(trainer, name)))
    hooks = [register_optimizer_step_pre_hook(lambda *a: live.set_phase("optimizer"))]
    if trainer.sma_loss is not None:  # the SMA loss's forward FLOPs are counted apart
        hooks.append(trainer.sma_loss.register_forward_pre_hook(lambda *a: setattr(live, "region", "sma")))
        hooks.append(trainer.sma_loss.register_forward_hook(lambda *a: setattr(live, "region", "")))
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()
        for name in ("_spatial_pass", "_temporal_pass"):
            trainer.__dict__.pop(name, None)


def measure_step(model: nn.Module, row: Setting, *, fake: FakeTensorMode | None, device: str = "cpu",
                 px_divisor: int = 1, steps: int = 1) -> dict[str, Any]:
    """Run ``steps`` training steps of ``row`` on ``model`` with :class:`LiveBytes` watching.

    ``fake`` None: a real run (for validation). Returns peaks per phase (bytes), the breakdown at the
    steady-state peak, FLOPs and the optimizer state size.
    """
    latent = max(1, row.size // px_divisor // 8)
    clip = make_clip(model, row.frames, latent)
    clean_model(model)
    if row.checkpointing == "diffusers":
        model.enable_gradient_checkpointing()
    trainer = Trainer(model, [clip], make_noise_scheduler(), train_config(row, steps), device=device)

    def classify() -> dict[str, int]:
        lora = getattr(trainer, "named_lora", None)
        if not lora:
            return {}
        params = list(lora.values())
        state = [v for s in trainer.optimizer.state.values() for v in s.values() if isinstance(v, torch.Tensor)]
        return {"lora": _storage_bytes(iter(params)),
                "gradients": _storage_bytes(p.grad for p in params if p.grad is not None),
                "optimizer": _storage_bytes(iter(state))}

    baseline = [*model.parameters(), *model.buffers()]
    live = LiveBytes(baseline, classify)
    fake_modes = (fake, FakeScalars(fake)) if fake is not None else ()
    began = time.perf_counter()
    try:
        with contextlib.ExitStack() as stack:
            for mode in fake_modes:
                stack.enter_context(mode)
            stack.enter_context(live)
            stack.enter_context(_phases(trainer, live))
            trainer.run()
        state_bytes = _storage_bytes(v for s in trainer.optimizer.state.values() for v in s.values()
                                     if isinstance(v, torch.Tensor))
        lora_bytes = _storage_bytes(iter(trainer.named_lora.values()))
        lora_tensors = len(trainer.named_lora)
    finally:
        clean_model(model)
    passes = {k: v for k, v in live.peaks.items() if k in ("spatial", "temporal")}
    before = max(passes.values()) if passes else 0
    top = max(passes, key=passes.get) if passes else "temporal"
    steady = max(before + (state_bytes if steps == 1 else 0), live.peaks.get("optimizer", 0))
    breakdown = dict(live.breakdowns.get(top, {}))
    if steps == 1 and breakdown:
        breakdown["optimizer"] = state_bytes
    total_flops = sum(live.flops.values())
    sma_flops = live.flops.get("sma", 0)
    return {"peak_bytes": steady, "peak_phase": top, "peak_op": live.peak_ops.get(top),
            "phase_peaks": live.peaks, "breakdown": breakdown, "optimizer_state_bytes": state_bytes,
            "lora_bytes": lora_bytes, "lora_tensors": lora_tensors, "weights_bytes": live.weights,
            "flops": total_flops, "sma_flops": sma_flops,
            "seconds": round(time.perf_counter() - began, 1)}


def estimate_setting(row: dict[str, Any] | Setting, size: str = "full", px_divisor: int = 1) -> dict[str, Any]:
    """Estimated steady-state peak (GiB, allocated) and FLOPs of one step of ``row`` at ``size``.

    ``adamw8bit`` is derived from the AdamW run: 8-bit AdamW keeps 2 bytes of state per LoRA value (plus
    one fp32 scale per 2048-value block) instead of AdamW's 8.
    """
    row = row if isinstance(row, Setting) else Setting(**row)
    dtype = Precision(row.precision, {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[
        row.precision], "cpu").weight_dtype
    model, fake = _model(row.family, dtype, size)
    run_row = replace(row, name="", optimizer="adamw")
    key = (run_row, size, px_divisor)
    if key not in _RESULTS:
        _RESULTS[key] = measure_step(model, run_row, fake=fake, px_divisor=px_divisor)
    result = {k: (dict(v) if isinstance(v, dict) else v) for k, v in _RESULTS[key].items()}
    if row.optimizer == "adamw8bit":
        values = result["lora_bytes"] // 4
        eight_bit = values * 2 + math.ceil(values / 2048) * 4 * 2
        result["peak_bytes"] += eight_bit - result["optimizer_state_bytes"]
        result["breakdown"]["optimizer"] = eight_bit
        result["optimizer_state_bytes"] = eight_bit
    result["peak_gib"] = result["peak_bytes"] / GIB
    result["card_gib"] = result["peak_gib"] + KERNELS_GIB + MARGIN_GIB + CONTEXT_GIB
    return result


def seconds_per_step(flops: float, tflops: float, utilisation: float = UTILISATION) -> float:
    return flops / (tflops * 1e12 * utilisation)


# --- grids ---------------------------------------------------------------------------------------------


def estimate_grid(name: str, families: list[str]) -> list[Setting]:
    """``default`` (about 2-3 minutes a row on 2 CPU cores): 16 x 512 with each checkpointing mode, the
    spatial path off, 8-bit AdamW (no extra run) and the MotionDirector ports' settings; ``full``: also
    SMA off / paper, bf16, rank 64, every frames x size, and the other families' headline and ports rows."""
    core = [
        HEADLINE,
        replace(HEADLINE, name="adamw8bit", optimizer="adamw8bit"),
        replace(HEADLINE, name="ckpt-diffusers", checkpointing="diffusers"),
        replace(HEADLINE, name="ckpt-off", checkpointing="off"),
        replace(HEADLINE, name="spatial-off", spatial=False),
        PORTS,
    ]
    if name == "default":
        return [r for r in core if r.family in families]
    more = [
        replace(HEADLINE, name="sma-off", sma="off"),
        replace(HEADLINE, name="sma-paper", sma="paper"),
        replace(HEADLINE, name="bf16", precision="bf16"),
        replace(HEADLINE, name="rank64", rank=64),
    ]
    sizes = [replace(HEADLINE, name=f"grid-{f}x{s}", frames=f, size=s)
             for f in (8, 16, 24) for s in (256, 384, 512) if (f, s) != (16, 512)]
    rows = core + more + sizes
    rows += [replace(r, family=family) for family in families[1:] for r in (HEADLINE, PORTS)]
    return [r for r in rows if r.family in families]


# --- validation against a real CPU run -----------------------------------------------------------------


def validate(frames: int = 8, size: int = 256, precision: str = "fp32", checkpointing: str = "pack",
             spatial: bool = True, sma: str = "plus") -> dict[str, Any]:
    """Estimate vs measurement on the CPU, tiny model (full key structure), ``size`` px, two steps.

    Real run: the same :class:`LiveBytes` tracker on real tensors, and the process's RSS growth (peak
    during the run minus before, sampled every 5 ms). Estimate: one fake step plus the optimizer state
    (the steady-state formula). Errors are ``estimate / measured - 1``.
    """
    from bench.bench_train import PeakRSS, build_model

    row = Setting("validate", frames=frames, size=size, precision=precision, checkpointing=checkpointing,
                  spatial=spatial, sma=sma)
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[precision]
    fake_model, fake = _model("v3", dtype, "tiny")
    estimated = measure_step(fake_model, row, fake=fake)
    real_model = build_model("tiny", torch.device("cpu"), dtype)
    gc.collect()
    with PeakRSS() as rss:
        before = rss.peak
        real = measure_step(real_model, row, fake=None, steps=2)
    rss_growth = rss.peak - before
    activations_real = real["peak_bytes"] - real["weights_bytes"]
    activations_est = estimated["peak_bytes"] - estimated["weights_bytes"]
    return {"kind": "validation", **asdict(row), "estimate_bytes": estimated["peak_bytes"],
            "tracked_real_bytes": real["peak_bytes"], "rss_growth_bytes": rss_growth,
            "error_vs_tracked_pct": round(100 * (estimated["peak_bytes"] / real["peak_bytes"] - 1), 2),
            "error_vs_tracked_activations_pct": round(100 * (activations_est / activations_real - 1), 2),
            "error_vs_rss_growth_pct": round(100 * (activations_est / rss_growth - 1), 2) if rss_growth > 0 else None,
            "estimate_seconds": estimated["seconds"], "real_seconds": real["seconds"]}


# --- output --------------------------------------------------------------------------------------------


def _gib(value: float) -> str:
    return f"{value / GIB:.2f}"


def grid_table(lines: list[dict[str, Any]]) -> str:
    """Markdown table of estimated rows with predicted seconds per step on named GPUs."""
    gpus = list(GPUS)
    head = ["name", "family", "frames x px", "precision", "checkpointing", "spatial", "sma", "rank", "optimizer",
            "peak GiB (allocated)", "on the card GiB", "weights", "LoRA+grads+opt", "activations", "TFLOP/step",
            *[f"s/step {g}" for g in gpus]]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for line in lines:
        if line.get("kind") != "estimate":
            continue
        b = line["breakdown"]
        rest = b.get("lora", 0) + b.get("gradients", 0) + b.get("optimizer", 0)
        cells = [line["name"], line["family"], f"{line['frames']} x {line['size']}", line["precision"],
                 line["checkpointing"], "on" if line["spatial"] else "off", line["sma"], str(line["rank"]),
                 line["optimizer"], f"{line['peak_gib']:.2f}", f"{line['card_gib']:.2f}", _gib(b.get("weights", 0)),
                 _gib(rest), _gib(b.get("activations", 0)), f"{line['flops'] / 1e12:.1f}",
                 *[f"{seconds_per_step(line['flops'], GPUS[g]):.2f}" for g in gpus]]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def compare(results: Path) -> list[dict[str, Any]]:
    """Estimates next to ``bench/gpu_bench.py`` measurements (``results.jsonl``); error in % of measured."""
    out = []
    for raw in results.read_text().splitlines():
        line = json.loads(raw)
        if line.get("kind") != "run":
            continue
        row = Setting(**{k: line[k] for k in Setting.__dataclass_fields__})
        est = estimate_setting(row)
        out.append({"kind": "comparison", **asdict(row), "measured_gib": line["peak_allocated_gib"],
                    "measured_reserved_gib": line.get("peak_reserved_gib"), "estimate_gib": round(est["peak_gib"], 3),
                    "error_pct": round(100 * (est["peak_gib"] / line["peak_allocated_gib"] - 1), 2),
                    "measured_s": line["seconds_per_step"], "tflop": round(est["flops"] / 1e12, 2)})
        print(json.dumps(out[-1]), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grid", choices=("default", "full"), default="default")
    parser.add_argument("--families", default="v3,v2")
    parser.add_argument("--only", default="", help="comma list of row names to run")
    parser.add_argument("--out", type=Path, default=None, help="folder for estimates.jsonl and table.md")
    parser.add_argument("--validate", action="store_true", help="estimate vs a real CPU run at a small size")
    parser.add_argument("--compare", type=Path, default=None, help="gpu_bench results.jsonl to compare with")
    args = parser.parse_args()
    torch.manual_seed(0)
    lines: list[dict[str, Any]] = []
    out = None
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        out = (args.out / "estimates.jsonl").open("w")

    def emit(line: dict[str, Any]) -> None:
        lines.append(line)
        text = json.dumps(line, default=str)
        print(text, flush=True)
        if out is not None:
            out.write(text + "\n")
            out.flush()

    if args.validate:
        for precision, checkpointing in (("fp32", "pack"), ("bf16", "pack"), ("fp32", "off")):
            emit(validate(precision=precision, checkpointing=checkpointing))
    if args.compare:
        for line in compare(args.compare):
            emit(line)
    if not args.validate and not args.compare:
        families = [f for f in args.families.split(",") if f]
        only = {n for n in args.only.split(",") if n}
        for row in estimate_grid(args.grid, families):
            if only and row.name not in only:
                continue
            result = estimate_setting(row)
            emit({"kind": "estimate", **asdict(row), **result})
        text = ("Estimated with bench/estimate.py (fake tensors, live storages, FLOP counter); peaks are "
                f"allocated bytes; on the card adds kernels' buffers, the allocator's margin and the CUDA context "
                f"({KERNELS_GIB} + {MARGIN_GIB} + {CONTEXT_GIB} GiB). s/step from FLOPs at "
                f"{UTILISATION:.0%} of each GPU's dense fp16 tensor rate (estimates, not measurements).\n\n")
        text += grid_table(lines)
        print("\n" + text)
        if args.out:
            (args.out / "table.md").write_text(text)
    if out is not None:
        out.close()


if __name__ == "__main__":
    main()
