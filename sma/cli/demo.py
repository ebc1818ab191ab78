"""``python -m sma demo``: learn a motion from one clip and give it to a new appearance, on the CPU, with
nothing to download.

What runs (everything seeded):

1. the pretrained toy base shipped with the pack (:mod:`sma.toyworld.base`: the pack's tiny
   AnimateDiff-structured UNet + motion module, trained on random toy clips, so for an appearance it
   generates *some* motion, in a random direction);
2. a reference clip from the toy world: a red bar gliding up and to the right (appearance A, motion M);
3. a motion LoRA trained on it with the pack's ``Trainer`` (MotionDirector's dual path + SMA ``plus``),
   on the noisier part of the schedule (t >= :data:`sma.toyworld.recipe.TOY_TIMESTEP_MIN`), where the layout and so the
   motion of a clip is decided;
4. new clips of a different appearance B (another shape on another background, the same colour: on
   this toy base a motion LoRA also learns the reference's colour, and a new colour does not transfer;
   README, "Does SMA help?") sampled from the same noise without and with the motion LoRA
   (MotionDirector's spatial LoRA off, as at inference);
5. the generated shapes are tracked by colour and their per-frame motion compared with M: the trajectory
   error (px/frame) without and with the LoRA, plus motion fidelity, how often the new shape is found and
   how far its background turned into the reference's (:mod:`sma.toyworld.transfer`).

Outputs: the LoRA (AnimateDiff-Evolved's format), ``demo.gif`` (reference | without LoRA | with LoRA,
one row per sample), the loss curve and ``summary.json``. Unless ``OMP_NUM_THREADS`` is set, the demo uses
one CPU thread: the tiny model gains little from more, and on a busy machine OpenMP threads waiting for
each other made it 20x slower (measured).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from .. import __version__
from ..atomic import atomic_write_path
from ..errors import SMAInputError
from ..toyworld import transfer
from ..toyworld.base import base_record
from ..toyworld.recipe import DEMO_VELOCITY, TOY_SAMPLE_STEPS, ToyBaseSource, demo_task, toy_train_config
from ..training import train_motion_lora
from ..toyworld.world import KINDS, Appearance
from .images import frame_grid, frames_to_uint8, save_gif
from .running import report_interrupted, save_loss_curve, terminal_progress

SAMPLES = 4
UPSCALE = 8
FPS = 6.0
LORA_NAME = "motion_lora.safetensors"
SUMMARY_SETTINGS = ("steps", "seed", "rank", "learning_rate", "targets", "sma_mode", "timestep_min")
"""The training settings the demo's summary.json records."""
NOTE = "trained on the toy base of `python -m sma demo`; it does not fit real AnimateDiff motion modules"


def _check(args: argparse.Namespace) -> None:
    if args.steps < 1:
        raise SMAInputError(f"--steps must be 1 or more, got {args.steps}.")
    if args.seed < 0:
        raise SMAInputError(f"--seed must be 0 or more, got {args.seed}.")
    if not 1 <= args.samples <= 16:
        raise SMAInputError(f"--samples must be 1..16, got {args.samples}.")


COLOUR_NAMES = ("red", "yellow", "green", "cyan", "blue", "magenta")
"""Names of the toy world's hues (``HUES_DEG``: 0, 60, ..., 300 degrees)."""


def describe(appearance: Appearance) -> str:
    """``'a red bar'`` / ``'a striped green triangle'``-style words for a one-shape appearance."""
    kind = KINDS[int(appearance.kind[0, 0])]
    hue = math.degrees(float(appearance.hue[0, 0])) % 360
    colour = COLOUR_NAMES[round(hue / 60) % len(COLOUR_NAMES)]
    texture = "striped " if float(appearance.striped[0, 0]) else ""
    return f"a {texture}{colour} {'bar' if kind == 'rect' else kind}"


COLUMNS = ("reference", "without LoRA", "with LoRA")
HEADER = 16
GAP = 4


def _header(width: int, tile: int) -> np.ndarray:
    """``uint8 [HEADER, width, 3]``: the column titles over tiles ``tile`` px wide, ``GAP`` px apart."""
    image = Image.new("RGB", (width, HEADER), "white")
    draw = ImageDraw.Draw(image)
    for index, title in enumerate(COLUMNS):
        left = index * (tile + GAP)
        text_width = draw.textlength(title)
        draw.text((left + (tile - text_width) / 2, 2), title, fill="black")
    return np.asarray(image)


def side_by_side(reference: torch.Tensor, without: torch.Tensor, with_lora: torch.Tensor) -> np.ndarray:
    """``uint8 [F, H', W', 3]``: per frame, titles, then one row per sample of (reference | without | with).

    Inputs: ``[F, H, W, 3]`` and ``[S, F, H, W, 3]`` (0..1)."""
    frames = []
    for f in range(reference.shape[0]):
        tiles = []
        for s in range(without.shape[0]):
            for clip in (reference[f], without[s, f], with_lora[s, f]):
                tiles.append(frames_to_uint8(clip.permute(2, 0, 1)[None], UPSCALE)[0])
        grid = frame_grid(np.stack(tiles), columns=3, gap=GAP)
        frames.append(np.concatenate([_header(grid.shape[1], tiles[0].shape[1]), grid]))
    return np.stack(frames)


def _write_json(data: dict[str, Any], path: Path) -> None:
    with atomic_write_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _single_thread_unless_set() -> None:
    """One intra-op thread unless ``OMP_NUM_THREADS`` says otherwise (see the module docstring)."""
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(1)


def run(args: argparse.Namespace) -> int:
    """Run the demo; returns the exit code (0, or 130 when interrupted)."""
    started = time.perf_counter()
    _check(args)
    _single_thread_unless_set()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    files = {"lora": out / LORA_NAME, "gif": out / "demo.gif", "loss_curve": out / "loss_curve.png",
             "summary": out / "summary.json"}
    task = demo_task(args.seed)
    config = toy_train_config(args.steps, args.seed)
    source = ToyBaseSource(task)
    print(f"learning the motion of a red bar ({DEMO_VELOCITY[0]:+g}, {DEMO_VELOCITY[1]:+g} px/frame) with a rank-{config.lora.rank} "
          f"motion LoRA, {args.steps} steps on the pretrained toy base (CPU); then generating "
          f"{describe(task.target)} on another background without and with it")
    trained = time.perf_counter()
    with terminal_progress(config.schedule.steps) as callbacks:
        outcome = train_motion_lora(source, config, files["lora"], device="cpu", callbacks=callbacks,
                                    metadata={"demo": True, "note": NOTE}, stop_is_interruption=True)
    training_seconds = time.perf_counter() - trained
    save_loss_curve(outcome.result, outcome.path, outcome.interrupted, files["loss_curve"])
    if outcome.interrupted:
        return report_interrupted(outcome, outcome.path)
    model = source.model

    seed = 1000 + args.seed
    without = transfer.generate(model, task, args.samples, seed, TOY_SAMPLE_STEPS, strength=0.0)
    with_lora = transfer.generate(model, task, args.samples, seed, TOY_SAMPLE_STEPS, strength=1.0)
    scores = {"without_lora": transfer.score_samples(without, task), "with_lora": transfer.score_samples(with_lora, task)}
    save_gif(side_by_side(task.frames, without, with_lora), files["gif"], FPS)
    summary = {
        "command": "demo", "version": __version__,
        "reference_motion_px_per_frame": list(DEMO_VELOCITY),
        "settings": {**{name: config.setting(name) for name in SUMMARY_SETTINGS},
                     "samples": args.samples, "sampling_steps": TOY_SAMPLE_STEPS},
        "new_appearance": describe(task.target) + " on another background",
        "seconds": {"training": round(training_seconds, 2), "total": round(time.perf_counter() - started, 2)},
        "scores": {name: {key: number if math.isfinite(number) else None for key, number in vars(value).items()}
                   for name, value in scores.items()},
        "base": {key: base_record().get(key) for key in ("wall_seconds", "device", "seed")},
        "files": {name: str(path) for name, path in files.items()},
    }
    _write_json(summary, files["summary"])
    _print_report(summary, files)
    return 0


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _print_report(summary: dict[str, Any], files: dict[str, Path]) -> None:
    off, on = summary["scores"]["without_lora"], summary["scores"]["with_lora"]
    print(f"done in {summary['seconds']['total']:.0f} s (training {summary['seconds']['training']:.0f} s)")
    ratio = on["error"] / off["error"] if off["error"] > 0 else float("nan")
    print(f"trajectory error against the reference motion, without -> with the motion LoRA: "
          f"{off['error']:.2f} -> {on['error']:.2f} px/frame ({ratio:.0%} of the error without; 0 = same motion)")
    print(f"motion fidelity {off['fidelity']:.2f} -> {on['fidelity']:.2f} (1 = same motion); the new subject "
          f"(its colour and shape) found in {off['found']:.0%} -> {on['found']:.0%} of frames")
    print(f"samples that copy the reference (closer to the red bar's clip than to the new subject moving like it): "
          f"{_share(off['copied'])} -> {_share(on['copied'])}; the red bar's colour in them: "
          f"{_share(off['leak'])} -> {_share(on['leak'])} of its area")
    print("files:")
    for name, path in files.items():
        print(f"  {name:11s} {path}")
    print(f"next: open {files['gif']} (reference | without LoRA | with LoRA). `python -m sma inspect {files['lora']}` "
          "shows what is in the LoRA. For AnimateDiff, train on your own SD1.5 checkpoint and motion module with "
          "`python -m sma train --checkpoint ... --motion-module ... --video ... --prompt ... --out my_motion.safetensors`"
          " and copy the result into ComfyUI/models/animatediff_motion_lora.")
