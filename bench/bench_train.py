"""Speed and memory of motion-LoRA training steps. Prints one JSON object per line.

    python -m bench.bench_train [--device auto|cpu|cuda] [--model tiny|full] [--frames 8,16,24]
                                [--sizes 256,384,512] [--steps 3] [--warmup 1] [--sma on,off]
                                [--spatial on,off] [--precision auto] [--threads N]

Models have random weights and the real key structure (nothing is downloaded): ``full`` is SD1.5's UNet
(built from the shipped config) + the full-size AnimateDiff v3 motion module
(``motion_module_state_dict("v3", "full")``); ``tiny`` is ``tiny_motion_unet("v3")``. Default: ``full``
on CUDA, ``tiny`` on the CPU. One model is built and reused: its adapters are removed after each run.

Lines:
- ``train_step``: one per (frames, size, SMA on/off, spatial path on/off): ``seconds_per_step`` is the
  median wall time between consecutive optimizer steps after ``--warmup`` steps (CUDA synchronised),
  ``min_seconds_per_step`` the fastest (steadier on a shared machine); ``peak_memory_mb`` is CUDA's
  ``max_memory_allocated`` during the run (weights included) on GPU, or the peak resident set size of
  the process during the run on the CPU (sampled every 5 ms with psutil; without psutil the
  lifetime peak from getrusage, flagged by ``memory`` = ``"rss_lifetime_peak"``).
- ``sma_overhead``: per (frames, size, spatial), ``100 * (SMA on / SMA off - 1)`` of the median step times.
- ``error``: a configuration that failed (e.g. out of memory), with the message.
"""
from __future__ import annotations

import argparse
import gc
import json
import statistics
import threading
import time
from typing import TYPE_CHECKING, Any

import torch

from sma.lora import adapter_names, remove_lora
from sma.models.build import (
    build_motion_unet,
    make_noise_scheduler,
    motion_module_state_dict,
    tiny_motion_unet,
)
from sma.models.config import unet_config
from sma.training import StepReport, TrainCallbacks, TrainConfig, Trainer, TrainingClip
from sma.training.memory import resolve_precision

if TYPE_CHECKING:
    from typing import Self

SMA_ON = "plus"


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _switches(text: str) -> list[bool]:
    allowed = {"on": True, "off": False}
    return [allowed[v.strip()] for v in text.split(",") if v.strip()]


def build_model(kind: str, device: torch.device, dtype: torch.dtype, family: str = "v3") -> torch.nn.Module:
    """A random-weight ``UNetMotionModel`` (``family`` layout), ``tiny`` or ``full`` SD1.5 size, on ``device``."""
    if kind == "tiny":
        return tiny_motion_unet(family, seed=0, dtype=dtype).to(device)
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    with torch.device(device):  # random init straight on the target device
        unet = UNet2DConditionModel.from_config(unet_config("full"))  # fp32; build_motion_unet casts
    motion = motion_module_state_dict(family, "full", dtype=torch.float16, seed=0)
    model = build_motion_unet(unet, motion, dtype)
    del unet, motion
    gc.collect()
    return model.to(device)


class PeakRSS:
    """Peak resident set size (bytes) of this process while the context is open."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval, self.peak, self.kind = interval, 0, "rss"
        self._stop = threading.Event()
        try:
            import psutil

            self._process = psutil.Process()
        except ImportError:
            self._process = None
            self.kind = "rss_lifetime_peak"

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self) -> Self:
        if self._process is not None:
            self.peak = self._process.memory_info().rss
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._stop.set()
            self._thread.join()
        else:
            import resource

            self.peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def time_run(model: torch.nn.Module, device: torch.device, frames: int, size: int, sma: bool, spatial: bool,
             args: argparse.Namespace) -> dict[str, Any]:
    """Train ``warmup + steps`` steps on random latents; the step times and the peak memory."""
    latent = size // 8
    generator = torch.Generator().manual_seed(0)
    clip = TrainingClip(torch.randn(frames, 4, latent, latent, generator=generator),
                        torch.randn(1, 77, int(model.config.cross_attention_dim), generator=generator))
    config = TrainConfig.from_flat(steps=args.warmup + args.steps, sma_mode=SMA_ON if sma else "off",
                                   spatial_path=spatial, precision=args.precision, rank=32)
    stamps: list[float] = []

    def on_step(report: StepReport) -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        stamps.append(time.perf_counter())

    trainer = Trainer(model, [clip], make_noise_scheduler(), config, device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        trainer.run(TrainCallbacks(on_step=on_step))
        peak, memory = torch.cuda.max_memory_allocated(device), "cuda_max_allocated"
    else:
        with PeakRSS() as rss:
            trainer.run(TrainCallbacks(on_step=on_step))
        peak, memory = rss.peak, rss.kind
    for name in list(adapter_names(model)):
        remove_lora(model, name)
    times = [b - a for a, b in zip(stamps[args.warmup - 1:], stamps[args.warmup:])]
    return {"kind": "train_step", "model": args.model, "device": str(device), "precision": trainer.precision.name,
            "frames": frames, "size": size, "latent": [latent, latent], "sma": SMA_ON if sma else "off",
            "spatial": spatial, "steps_timed": len(times), "seconds_per_step": round(statistics.median(times), 4),
            "min_seconds_per_step": round(min(times), 4), "peak_memory_mb": round(peak / 2**20, 1),
            "memory": memory, "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--model", choices=("tiny", "full"), default=None, help="default: full on CUDA, tiny on CPU")
    parser.add_argument("--frames", type=_ints, default=[8, 16, 24])
    parser.add_argument("--sizes", type=_ints, default=[256, 384, 512], help="frame sides in px (multiples of 8)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per configuration")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (>= 1)")
    parser.add_argument("--sma", type=_switches, default=[True, False], help="on,off")
    parser.add_argument("--spatial", type=_switches, default=[True, False], help="on,off")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    args = parser.parse_args()
    if args.warmup < 1 or args.steps < 1:
        parser.error("--warmup and --steps must be >= 1")
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    args.model = args.model or ("full" if device.type == "cuda" else "tiny")
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    model = build_model(args.model, device, resolve_precision(args.precision, device).weight_dtype)
    print(json.dumps({"kind": "model", "model": args.model, "device": str(device),
                      "parameters": sum(p.numel() for p in model.parameters()),
                      "build_seconds": round(time.perf_counter() - started, 2)}), flush=True)
    medians: dict[tuple, float] = {}
    for frames in args.frames:
        for size in args.sizes:
            for spatial in args.spatial:
                for sma in args.sma:
                    try:
                        line = time_run(model, device, frames, size, sma, spatial, args)
                    except (RuntimeError, ValueError) as error:  # out of memory, impossible settings
                        for name in list(adapter_names(model)):
                            remove_lora(model, name)
                        line = {"kind": "error", "frames": frames, "size": size, "sma": sma, "spatial": spatial,
                                "error": str(error).splitlines()[0][:300]}
                    else:
                        medians[(frames, size, spatial, sma)] = line["seconds_per_step"]
                    print(json.dumps(line), flush=True)
                    gc.collect()
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
                on, off = medians.get((frames, size, spatial, True)), medians.get((frames, size, spatial, False))
                if on and off:
                    print(json.dumps({"kind": "sma_overhead", "model": args.model, "device": str(device),
                                      "frames": frames, "size": size, "spatial": spatial, "sma_on_s": on,
                                      "sma_off_s": off, "overhead_pct": round(100 * (on / off - 1), 1)}), flush=True)


if __name__ == "__main__":
    main()
