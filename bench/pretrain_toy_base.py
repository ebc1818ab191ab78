"""Pretrain the toy base (the tiny AnimateDiff-structured model of ``sma.toyworld``) and check its samples.

Writes into ``--out``: ``toy_base_unet.safetensors`` + ``toy_base_motion.safetensors`` (fp16, about 6 MB
together) and ``toy_base.json`` (settings, seed, device, wall time, loss, quality checks). Copy them into
``sma/toyworld/weights/`` to ship them. Prints progress with the wall time, then the quality checks
(``sma.toyworld.quality``); exits with 1 when a check fails.

The shipped base was trained on the CPU in two stages, the second continuing the first (``--init``); its
record, ``sma/toyworld/weights/toy_base.json``, gives both stages' settings, seeds and wall times (85 minutes
in all on one thread of a busy 2-core machine, 2.6-3.0 s/step)::

    python bench/pretrain_toy_base.py --device cpu --steps 700 --batch 8 --pool 2048 --seed 0 --out STAGE1
    python bench/pretrain_toy_base.py --device cpu --init STAGE1 --steps 1099 --batch 8 --pool 4096 --seed 1 --out OUT

On a GPU the tiny model is bound by per-step overhead (measured on an H100: about 0.35 s per step whatever
the batch, 24 to 128 clips), so a GPU helps through larger batches, not more steps per second::

    python bench/pretrain_toy_base.py --device cuda --steps 700 --batch 128 --pool 16384 --out OUT
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sma.toyworld.base import base_record, save_base  # noqa: E402
from sma.toyworld.pretrain import PretrainConfig, pretrain  # noqa: E402
from sma.toyworld.quality import check_base  # noqa: E402


def profile(config: PretrainConfig, device: str) -> None:
    """Print where the time of ``config.steps`` pretraining steps goes (torch.profiler, top 25 ops)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    with torch_profile(activities=activities) as prof:
        pretrain(config, device, log=lambda line: None)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--steps", type=int, default=PretrainConfig.steps)
    parser.add_argument("--batch", type=int, default=PretrainConfig.batch, help="clips per step")
    parser.add_argument("--pool", type=int, default=PretrainConfig.pool, help="random scenes to draw clips from")
    parser.add_argument("--lr", type=float, default=PretrainConfig.lr)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--init", default=None, help="continue from the base files in this folder")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="bf16: autocast on CUDA")
    parser.add_argument("--profile", type=int, default=0, help="print a profile of this many steps first")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--check-clips", type=int, default=28, help="appearances sampled by the quality checks")
    parser.add_argument("--check-steps", type=int, default=25, help="DDIM steps of the quality checks' samples")
    parser.add_argument("--time-budget", type=float, default=None,
                        help="seconds of training: fewer steps than --steps if they would not fit (measured)")
    parser.add_argument("--checkpoint-every", type=int, default=0,
                        help="also write the EMA weights so far into OUT/checkpoint every N steps (0 = never)")
    parser.add_argument("--log-every", type=int, default=100, help="print progress every N steps")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    config = PretrainConfig(steps=args.steps, batch=args.batch, pool=args.pool, lr=args.lr, seed=args.seed,
                            precision=args.precision, init=args.init)
    if args.profile:
        profile(PretrainConfig(steps=args.profile, batch=args.batch, pool=min(args.pool, 512), lr=args.lr,
                               seed=args.seed, precision=args.precision), args.device)
    print(f"pretraining the toy base: {json.dumps(vars(args))}", flush=True)
    def checkpoint(step: int, ema: torch.nn.Module) -> None:
        save_base(ema, Path(args.out) / "checkpoint", {"step": step, "settings": vars(args)})

    model, record = pretrain(config, args.device, log=lambda line: print(line, flush=True), log_every=args.log_every,
                             time_budget=args.time_budget, on_checkpoint=checkpoint,
                             checkpoint_every=args.checkpoint_every)
    if args.init:  # the record of the run this one continues, so the total cost stays on record
        earlier = base_record(args.init)
        earlier.pop("quality", None)
        record["continued_from"] = earlier
        record["total_wall_seconds"] = round(record["wall_seconds"] + earlier.get("total_wall_seconds",
                                                                                 earlier.get("wall_seconds", 0)), 1)
    checked = time.perf_counter()
    report = check_base(model, clips=args.check_clips, steps=args.check_steps, seed=1)
    record["quality"] = report.to_dict() | {"seconds": round(time.perf_counter() - checked, 1)}
    paths = save_base(model, args.out, record)
    print(report.summary())
    print(f"wall time {record['wall_seconds']:.0f} s (training), quality checks "
          f"{record['quality']['seconds']:.0f} s; wrote {', '.join(str(p) for p in paths.values())}")
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
