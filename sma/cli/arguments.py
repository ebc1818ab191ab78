"""Argument parsers of the sub-commands (kept free of heavy imports, so ``--help`` is quick).

Training options are the settings of :class:`sma.training.TrainConfig` under the same names
(``learning_rate`` -> ``--learning-rate``); their choices and defaults (shown in ``--help``) are the
config's own, and an optional setting's 0 (or ``auto``) is its automatic choice.
"""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Callable
from typing import Any

from ..text import TOKENIZER_SOURCES_HELP
from ..training.config import DEFAULTS, limit, parse_numbers, to_interface

DEMO_STEPS = 400
DEMO_SAMPLES = 4
"""The v3 motion module's positional-encoding length."""

VIDEO_FRAMES = 16
VIDEO_WIDTH = 512
RESUME_DEFAULT = "auto"
HELP_WIDTH = 100

def _names(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def _numbers(text: str) -> tuple[float, ...]:
    return parse_numbers("--level-weights", text)


# (setting, type, help); the flag is ``--`` + the setting with dashes, the choices and the default are the config's.
# An optional setting's 0 (or "auto") is its automatic choice, as on the node (``sma.training.config.from_interface``).
CONFIG_OPTIONS: tuple[tuple[str, Callable[[str], Any], str], ...] = (
    ("steps", int, "optimizer steps"),
    ("learning_rate", float, "learning rate of the motion (temporal) LoRA"),
    ("spatial_learning_rate", float, "learning rate of MotionDirector's spatial (appearance) LoRA"),
    ("rank", int, "rank of the motion LoRA"),
    ("alpha", float, "alpha of the motion LoRA, 0 = the rank (scale 1)"),
    ("targets", _names, "motion LoRA layers: attention, optionally ff and proj, comma-separated"),
    ("spatial_rank", int, "rank of the spatial LoRA, 0 = the motion LoRA's rank"),
    ("spatial_skip_prob", float, "share of steps trained without the spatial path"),
    ("sma_mode", str, "SMA loss: plus (fixed), paper (as published) or off"),
    ("lambda_global", float, "weight of the SMA wavelet (global, over time) term"),
    ("lambda_local", float, "weight of the SMA Fourier (local, within frames) term"),
    ("wavelet_levels", int, "wavelet levels, 0 = the deepest the window allows"),
    ("level_weights", _numbers,
     "weight per wavelet band, comma-separated: approximation, then finest to coarsest detail (levels + 1 values)"),
    ("wavelet", str, "a discrete PyWavelets wavelet"),
    ("wavelet_mode", str, "DWT padding, auto = zero in paper mode, symmetric in plus mode"),
    ("weight_delta", float, "low-frequency weight map: delta"),
    ("weight_base", float, "low-frequency weight map: base"),
    ("weight_sharpness", float, "plus mode: exponent of the low-frequency weight map (0 = flat)"),
    ("snr_gamma", float, "plus mode: min-SNR gamma of the timestep weight (0 = off)"),
    ("phase_loss", str, "plus mode: phase distance, wrap (1 - cos) or raw (|dphi|)"),
    ("objective", str, "what the temporal path fits: motiondirector (MSE + appearance-debiased MSE) or vmc (cosine "
                       "alignment of the frame-to-frame changes of predicted and true noise)"),
    ("debias_weight", float, "weight of MotionDirector's appearance-debiased loss"),
    ("debias_beta", float, "beta of the appearance-debiased loss"),
    ("seed", int, "seed of every random choice"),
    ("timestep_min", int, "smallest training timestep"),
    ("timestep_max", int, "largest training timestep"),
    ("appearance_augment", int,
     "recoloured copies of each clip (hue, saturation, contrast, grey) for the motion LoRA only, so it learns "
     "the motion and not the colours (0 = off)"),
    ("precision", str, "auto: bf16 (or fp16) on CUDA, fp32 on the CPU"),
    ("window", int,
     "frames per training window, 0 = the shortest clip, at most the motion module's 24 (v1) / 32"),
    ("clips_per_step", int, "clips per micro-batch (they need equal sizes)"),
    ("grad_accum", int, "micro-batches accumulated per step"),
    ("max_grad_norm", float, "gradient clipping per LoRA (0 = off)"),
    ("optimizer", str, "adamw8bit needs bitsandbytes and CUDA"),
    ("weight_decay", float, "AdamW weight decay"),
    ("lr_schedule", str, "learning-rate schedule after the warm-up"),
    ("warmup_steps", int, "linear learning-rate warm-up steps"),
    ("attention_slice", int, "attention in slices of this many rows, less memory (0 = off)"),
    ("checkpoint_every", int,
     "write a resumable checkpoint every N steps into <out stem>_checkpoints/ (0 = only when stopped by Ctrl-C)"),
    ("keep_checkpoints", int, "newest checkpoints kept"),
    ("preview_every", int,
     "every N steps write the one-step estimate of the clip as PNG + GIF into <out stem>_previews/ (0 = never)"),
    ("validation_every", int,
     "every N steps a validation sample of --validation-prompt as an animated WebP into <out stem>_checkpoints/ "
     "(default: 50 with --validation-prompt, else 0 = never); each costs about 5 training steps"),
    ("validation_steps", int, "DDIM steps of a validation sample"),
    ("validation_guidance", float, "classifier-free guidance of validation samples"),
    ("validation_seed", int, "seed of the validation samples' noise (its own; training is unchanged)"),
    ("gradient_share_every", int,
     "every N steps measure the SMA terms' share of the motion LoRA's gradient, shown beside the losses (0 = never)"),
)
VALIDATION_EVERY = 50
"""Validation-sample interval when ``--validation-prompt`` is given without ``--validation-every``."""
SWITCHES: tuple[tuple[str, str], ...] = (
    ("spatial_path", "train the motion LoRA alone, without MotionDirector's spatial LoRA"),
    ("gradient_checkpointing", "faster, but needs much more memory"),
    ("snr_normalise", "plus mode: keep the raw timestep weight instead of scaling it to mean 1 over the trained "
                      "timesteps (as earlier versions did)"),
)
"""Settings that default to on: ``--no-<setting>`` turns them off."""


def flag(setting: str, prefix: str = "--") -> str:
    """The command-line flag of a setting: ``learning_rate`` -> ``--learning-rate``."""
    return prefix + setting.replace("_", "-")


def config_default(name: str) -> object:
    """The default of a flat :class:`TrainConfig` setting, as ``--help`` shows it."""
    value = to_interface(name, DEFAULTS[name])
    return ",".join(map(str, value)) if isinstance(value, list) else value


def add_demo_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="learn a motion from a toy clip and give it to a new appearance (CPU, a minute or two, "
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
    files.add_argument("--validation-prompt", default=None, metavar="TEXT",
                       help="a prompt for validation samples during training (a new subject doing the motion)")
    files.add_argument("--validation-negative", default="", metavar="TEXT",
                       help="the negative prompt of validation samples (default: empty)")
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
    for name, kind, text in CONFIG_OPTIONS:
        shown = text if "default:" in text else f"{text} (default: {config_default(name)})"
        bound = limit(name)
        training.add_argument(flag(name), dest=name, type=kind, choices=bound.choices if bound else None,
                              default=argparse.SUPPRESS, help=shown)
    for name, text in SWITCHES:
        training.add_argument(flag(name, "--no-"), dest=name, action="store_false", default=argparse.SUPPRESS,
                              help=text)


def add_inspect_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "inspect", help="show what is in a motion LoRA file (metadata, layers, ranks, blocks)",
        description="Print a motion LoRA's metadata, layers, ranks, dtypes, covered blocks and parameter count. "
                    "Reads this pack's files and other trainers' layouts (ADE, MotionDirector, diffusers/peft, kohya).")
    parser.add_argument("file", help="the LoRA file (.safetensors, or a tensors-only .ckpt/.pt/.pth/.bin)")


def add_merge_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "merge", help="blend several motion LoRAs into one file (exact, or SVD-compressed to a rank)",
        description="Writes one ADE motion LoRA whose weight update is the weighted sum of the sources' updates. "
                    "Exact by default (the ranks add up); --rank N compresses each layer to rank N with an SVD and "
                    "prints the relative error that costs. The sources must be of one motion-module family.")
    parser.add_argument("sources", nargs="+", metavar="FILE[:WEIGHT]",
                        help="motion LoRA files, each with an optional weight (default 1), e.g. a.safetensors:0.7")
    parser.add_argument("--out", required=True, help="the merged LoRA to write (.safetensors)")
    parser.add_argument("--rank", type=int, default=None, help="compress every layer to this rank (default: exact)")
    parser.add_argument("--dtype", choices=("fp16", "fp32"), default="fp16", help="dtype of the file (default: fp16)")
    parser.add_argument("--worst", type=int, default=3, help="layers with the largest error to list (default: 3)")
