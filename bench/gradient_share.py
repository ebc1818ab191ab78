"""How much SMA steers the motion LoRA: its gradient share per mode, at the start of training and at its end.

Trains the demo's motion LoRA (the toy recipe, :mod:`sma.toyworld.recipe`) once per SMA mode with the share
measured at every step (``gradient_share_every = 1``; training is the same as without the measurement) and
prints, per mode, the median share of the first and of the last ``--window`` steps: ``|grad SMA| / |grad
(denoising + debias)|`` on the motion LoRA (``sma.training.gradient_share``). Each step draws its own
timestep, so single values swing; the medians are the figures. One JSON line per mode.

    python bench/gradient_share.py --steps 400 --modes plus,paper
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--window", type=int, default=12, help="steps at each end whose median is reported")
    parser.add_argument("--modes", default="plus,paper")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--settings", default="{}", help="more training settings, as JSON (e.g. '{\"snr_normalise\": false}')")
    args = parser.parse_args(argv)
    import torch

    from sma.toyworld.recipe import demo_task, toy_train_config, toy_trainer

    torch.set_num_threads(1)
    for mode in args.modes.split(","):
        started = time.perf_counter()
        config = toy_train_config(args.steps, args.seed, sma_mode=mode, gradient_share_every=1,
                                  **json.loads(args.settings))
        shares = toy_trainer(demo_task(args.seed), config).run().gradient_shares
        steps = sorted(shares)
        first, last = steps[:args.window], steps[-args.window:]
        print(json.dumps({"mode": mode, "settings": json.loads(args.settings), "steps": args.steps,
                          "share_first": round(statistics.median(shares[s] for s in first), 4),
                          "share_last": round(statistics.median(shares[s] for s in last), 4),
                          "share_all": round(statistics.median(shares.values()), 4),
                          "seconds": round(time.perf_counter() - started, 1)}), flush=True)


if __name__ == "__main__":
    main()
