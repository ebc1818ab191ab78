"""Argument parsers of the sub-commands (kept free of heavy imports, so ``--help`` is quick).

Training options map one to one onto :class:`sma.train.TrainConfig` fields; their defaults (shown in
``--help``) are the config's own defaults.
"""

from __future__ import annotations

import argparse
import textwrap
from dataclasses import MISSING, fields

from ..text import TOKENIZER_SOURCES_HELP
from ..training.config import (
    LR_SCHEDULES,
    OPTIMIZERS,
    PRECISIONS,
    SMA_MODES,
    TrainConfig,
)

DEMO_STEPS = 150
DEMO_SAMPLES = 4
"""The v3 motion module's positional-encoding length."""

VIDEO_FRAMES = 16
VIDEO_WIDTH = 512
RESUME_DEFAULT = "auto"
HELP_WIDTH = 100

# (flag, TrainConfig field, type, choices, help)
CONFIG_OPTIONS: tuple[tuple[str, str, type, tuple[str, ...] | None, str], ...] = (
    ("--steps", "steps", int, None, "optimizer steps"),
    ("--lr", "lr_temporal", float, None, "learning rate of the motion (temporal) LoRA"),
    ("--lr-spatial", "lr_spatial", float, None, "learning rate of MotionDirector's spatial (appearance) LoRA"),
    ("--rank", "rank", int, None, "rank of the motion LoRA"),
    ("--alpha", "alpha", float, None, "alpha of the motion LoRA (default: the rank, i.e. scale 1)"),
    ("--sma-mode", "sma_mode", str, SMA_MODES, "SMA loss: plus (fixed), paper (as published) or off"),
    ("--lambda-global", "lambda_global", float, None, "weight of the SMA wavelet (global, over time) term"),
    ("--lambda-local", "lambda_local", float, None, "weight of the SMA Fourier (local, within frames) term"),
    ("--levels", "sma_levels", int, None, "wavelet levels (default: the deepest the window allows)"),
    ("--seed", "seed", int, None, "seed of every random choice"),
    ("--precision", "precision", str, PRECISIONS, "auto: bf16 (or fp16) on CUDA, fp32 on the CPU"),
    ("--window", "frames", int, None,
     "frames per training window (default: the shortest clip, at most the motion module's 24 (v1) / 32)"),
    ("--clips-per-step", "clips_per_step", int, None, "clips per micro-batch (they need equal sizes)"),
    ("--grad-accum", "grad_accum", int, None, "micro-batches accumulated per step"),
    ("--optimizer", "optimizer", str, OPTIMIZERS, "adamw8bit needs bitsandbytes and CUDA"),
    ("--lr-schedule", "lr_schedule", str, LR_SCHEDULES, "learning-rate schedule after the warm-up"),
    ("--warmup-steps", "warmup_steps", int, None, "linear learning-rate warm-up steps"),
    ("--attention-slice", "attention_slice", int, None, "attention in slices of this many rows, less memory (0 = off)"),
    ("--checkpoint-every", "checkpoint_every", int, None,
     "write a resumable checkpoint every N steps into <out stem>_checkpoints/ (0 = only when stopped by Ctrl-C)"),
    ("--keep-checkpoints", "keep_checkpoints", int, None, "newest checkpoints kept"),
    ("--preview-every", "preview_every", int, None,
     "every N steps write the one-step estimate of the clip as PNG + GIF into <out stem>_previews/ (0 = never)"),
)


def config_default(field_name: str) -> object:
    """The default of a :class:`TrainConfig` field."""
    field = next(f for f in fields(TrainConfig) if f.name == field_name)
    return field.default if field.default is not MISSING else field.default_factory()  # type: ignore[misc]


def add_demo_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="learn a motion from a toy clip and give it to a new appearance (CPU, about a minute, "
                     "no downloads)",
        description="Runs the whole pipeline on the CPU with nothing to download: the pretrained toy base shipped "
                    "with the pack (a tiny AnimateDiff-structured model), a reference clip from the toy world, SMA "
                    "motion-LoRA training, then clips of a new appearance without and with the LoRA, side by side "
                    "in a GIF, and the trajectory error of each against the reference motion. Writes the LoRA, "
                    "demo.gif, a loss curve and summary.json into --out.")
    parser.add_argument("--out", default="sma_demo", help="output folder, created if needed (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=DEMO_STEPS, help="training steps (default: %(default)s)")
    parser.add_argument("--samples", type=int, default=DEMO_SAMPLES,
                        help="clips generated with and without the LoRA, 1..16 (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the clip, the training and the samples "
                                                            "(default: 0)")


def add_train_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="train a motion LoRA on your SD1.5 checkpoint + AnimateDiff motion module",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="\n\n".join(textwrap.fill(paragraph, HELP_WIDTH) for paragraph in (
            ("Train an AnimateDiff-Evolved motion LoRA on reference videos with MotionDirector's dual path and the "
             "SMA loss, using weights already on disk (nothing is downloaded)."),
            "Several clips: repeat --video, with one --prompt for all or one --prompt per video.",
            TOKENIZER_SOURCES_HELP)))
    files = parser.add_argument_group("files")
    files.add_argument("--checkpoint", required=True, help="single-file SD1.5 checkpoint (.safetensors or .ckpt)")
    files.add_argument("--motion-module", required=True, help="AnimateDiff SD1.5 motion module (v1, v2, v3, AnimateLCM)")
    files.add_argument("--video", action="append", required=True, help="reference video (repeat for several clips)")
    files.add_argument("--prompt", action="append", default=None,
                       help="what the video shows; one for all videos or one per --video (default: empty)")
    files.add_argument("--out", required=True, help="the motion LoRA to write (.safetensors); its loss curve goes "
                                                    "beside it as <stem>_loss.png")
    files.add_argument("--tokenizer", default=None, metavar="DIR",
                       help="folder with CLIP's vocab.json + merges.txt (default: found automatically, see above)")
    files.add_argument("--resume", nargs="?", const=RESUME_DEFAULT, default=None, metavar="CHECKPOINT",
                       help="continue from a checkpoint file or folder (no value: <out stem>_checkpoints/)")

    video = parser.add_argument_group("video frames")
    video.add_argument("--frames", type=int, default=VIDEO_FRAMES, help="most frames to load (0 = all; default: %(default)s)")
    video.add_argument("--skip", type=int, default=0, help="frames skipped at the start (default: 0)")
    video.add_argument("--every-nth", type=int, default=1, help="keep one frame in N (default: 1)")
    video.add_argument("--fps", type=float, default=0.0, help="resample to this frame rate first (0 = the video's)")
    video.add_argument("--width", type=int, default=VIDEO_WIDTH,
                       help="width in px, 0 = keep; with --height 0 the height follows the aspect ratio "
                            "(default: %(default)s); sizes are cropped to multiples of 8")
    video.add_argument("--height", type=int, default=0, help="height in px, 0 = follow the aspect ratio (default: 0)")

    training = parser.add_argument_group("training")
    training.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda or cuda:N")
    for flag, name, kind, choices, text in CONFIG_OPTIONS:
        shown = text if "default:" in text else f"{text} (default: {config_default(name)})"
        training.add_argument(flag, dest=name, type=kind, choices=choices, default=None, help=shown)
    training.add_argument("--targets", default=None,
                          help="motion LoRA layers: attention, optionally ff and proj, comma-separated "
                               f"(default: {','.join(config_default('lora_targets'))})")
    training.add_argument("--no-spatial", action="store_true",
                          help="train the motion LoRA alone, without MotionDirector's spatial LoRA")
    training.add_argument("--no-gradient-checkpointing", action="store_true",
                          help="faster, but needs much more memory")


def add_inspect_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "inspect", help="show what is in a motion LoRA file (metadata, layers, ranks, blocks)",
        description="Print a motion LoRA's metadata, layers, ranks, dtypes, covered blocks and parameter count. "
                    "Reads this pack's files and other trainers' layouts (ADE, MotionDirector, diffusers/peft, kohya).")
    parser.add_argument("file", help="the LoRA file (.safetensors, or a tensors-only .ckpt/.pt/.pth/.bin)")
