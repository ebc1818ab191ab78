"""``python -m sma train``: a motion LoRA from the user's SD1.5 checkpoint, motion module and videos.

Order of work (cheap checks first, one large model in memory at a time):

1. check the arguments (files exist, output name, prompt count, training settings, device);
2. read the videos (frames ``[F, H, W, 3]``, sides cropped to multiples of 8);
3. load the motion module (refuses files that are not one) and find the CLIP tokenizer (offline);
4. read the checkpoint once; build the VAE, encode every clip's frames once, free it; build the CLIP
   text encoder, encode the prompts once, free it; build the UNet + motion module in the training dtype;
5. train and write the LoRA atomically with metadata (:func:`sma.training.train_motion_lora`), then its
   loss curve.

Model loading sits behind :class:`ModelSource`, so the same pipeline runs on any source of the three
models (the tests use tiny ones).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from ..atomic import check_writable
from ..augment import with_recoloured_copies
from ..errors import SMAInputError
from ..models.build import build_motion_unet
from ..models.files import PICKLE_SUFFIXES, load_motion_module, load_state_dict_file
from ..models.sd15 import (
    load_sd15_text_encoder,
    load_sd15_vae,
    unet_state_dict_to_diffusers,
)
from ..text import encode_prompts, load_clip_tokenizer
from ..training.config import from_interface
from ..training import TrainConfig, TrainingClip, ValidationPrompt, free_memory, setting_names, train_motion_lora
from ..video import VideoClip, VideoOptions, read_video
from ..viz import save_png
from .arguments import RESUME_DEFAULT, VALIDATION_EVERY
from .images import frame_grid, frames_to_uint8, save_gif
from .running import report_interrupted, resolve_device, save_loss_curve, terminal_progress

WEIGHT_SUFFIXES = (".safetensors", *PICKLE_SUFFIXES)
VAE_CHUNK = 4
"""Frames per VAE encoder call."""
PREVIEW_UPSCALE = 4
"""Preview frames (latent resolution, 1/8 of the video) are shown at half the video's size."""


@dataclass
class TrainPlan:
    """The checked arguments of one ``train`` run."""

    checkpoint: Path
    motion_module: Path
    videos: list[Path]
    prompts: list[str]
    out: Path
    video_options: VideoOptions
    config: TrainConfig
    device: torch.device
    resume: Path | None
    tokenizer_dir: str | None
    previews: Path | None


class ModelSource(Protocol):
    """Where the three models come from; each is asked for once, in this order."""

    def vae(self) -> nn.Module:
        """An ``AutoencoderKL`` (its ``config.scaling_factor`` scales the latents)."""

    def text_encoder(self) -> nn.Module:
        """A CLIP text model whose output width is the UNet's cross-attention width."""

    def motion_unet(self, dtype: torch.dtype) -> nn.Module:
        """The ``UNetMotionModel`` to train, in ``dtype``; the source may drop its weights afterwards."""


class CheckpointSource:
    """An SD1.5 single-file checkpoint (read once) and an original-naming motion module."""

    def __init__(self, checkpoint: Path, motion: dict[str, torch.Tensor]) -> None:
        self._state: dict[str, torch.Tensor] | None = load_state_dict_file(checkpoint)
        self._unet: dict[str, torch.Tensor] | None = unet_state_dict_to_diffusers(self._state)  # SD1.5 UNet check
        self._motion: dict[str, torch.Tensor] | None = motion

    def vae(self) -> nn.Module:
        return load_sd15_vae(self._state)

    def text_encoder(self) -> nn.Module:
        return load_sd15_text_encoder(self._state)

    def motion_unet(self, dtype: torch.dtype) -> nn.Module:
        unet = build_motion_unet(self._unet, self._motion, dtype)
        self._state = self._unet = self._motion = None  # the model keeps what it needs
        return unet


SourceFactory = Callable[[TrainPlan, dict[str, torch.Tensor]], ModelSource]


def open_checkpoint_source(plan: TrainPlan, motion: dict[str, torch.Tensor]) -> ModelSource:
    return CheckpointSource(plan.checkpoint, motion)


# --- arguments -----------------------------------------------------------------------------------------

def _weight_file(value: str, flag: str) -> Path:
    path = Path(value).expanduser()
    if not path.is_file():
        raise SMAInputError(f"{flag}: file not found: {path}.")
    if path.suffix.lower() not in WEIGHT_SUFFIXES:
        raise SMAInputError(f"{flag}: {path.name} is not a weights file; use {', '.join(WEIGHT_SUFFIXES)}.")
    return path


def _prompts(prompts: list[str] | None, videos: int) -> list[str]:
    prompts = prompts or [""]
    if len(prompts) == 1:
        return prompts * videos
    if len(prompts) != videos:
        raise SMAInputError(f"got {videos} --video and {len(prompts)} --prompt: give one --prompt for all videos "
                            "or one per video, in the same order.")
    return prompts


def _out_path(value: str) -> Path:
    out = Path(value).expanduser()
    if out.suffix.lower() != ".safetensors":
        raise SMAInputError(f"--out must be a .safetensors file (ComfyUI/models/animatediff_motion_lora reads those), "
                            f"got {out.name!r}.")
    if out.is_dir():
        raise SMAInputError(f"--out {out} is a folder; give a file name such as {out / 'my_motion.safetensors'}.")
    return out


def train_config(args: argparse.Namespace, checkpoint_dir: Path) -> TrainConfig:
    """The :class:`TrainConfig` of the command-line options (options not given keep the config's defaults)."""
    values: dict[str, Any] = {name: getattr(args, name) for name in setting_names() if hasattr(args, name)}
    if getattr(args, "validation_prompt", None) is not None:
        values.setdefault("validation_every", VALIDATION_EVERY)
    elif values.get("validation_every"):
        raise SMAInputError("--validation-every needs --validation-prompt (what the samples show).")
    return TrainConfig.from_flat(from_interface(values), checkpoint_dir=str(checkpoint_dir))


def plan_training(args: argparse.Namespace) -> TrainPlan:
    """Check every argument without loading anything large.

    Raises:
        SMAInputError: a missing file, a wrong suffix, a bad setting, a prompt count that does not fit.
    """
    checkpoint = _weight_file(args.checkpoint, "--checkpoint")
    motion_module = _weight_file(args.motion_module, "--motion-module")
    videos = [Path(v).expanduser() for v in args.video]  # read (and checked) right after planning
    prompts = _prompts(args.prompt, len(videos))
    out = _out_path(args.out)
    checkpoints = out.with_name(f"{out.stem}_checkpoints")
    config = train_config(args, checkpoints)
    resume = None
    if args.resume is not None:
        resume = checkpoints if args.resume == RESUME_DEFAULT else Path(args.resume).expanduser()
        if not resume.exists():
            raise SMAInputError(f"--resume: {resume} does not exist (a checkpoint file or a folder of them).")
    options = VideoOptions(frame_load_cap=args.frames, skip_first_frames=args.skip, select_every_nth=args.every_nth,
                           force_rate=args.fps, width=args.width, height=args.height)
    previews = out.with_name(f"{out.stem}_previews") if config.validation.preview_every else None
    device = resolve_device(args.device)
    check_writable(out.parent)  # now, not after hours of training
    return TrainPlan(checkpoint, motion_module, videos, prompts, out, options, config, device, resume, args.tokenizer,
                     previews)


# --- encoding ------------------------------------------------------------------------------------------

@torch.no_grad()
def encode_frames(vae: nn.Module, frames: torch.Tensor, chunk: int = VAE_CHUNK) -> torch.Tensor:
    """VAE latents of ``frames [F, H, W, 3]`` (0..1): the posterior means times ``vae.config.scaling_factor``,
    ``[F, C, H/8, W/8]`` float32 on the CPU; ``chunk`` frames per encoder call."""
    parameter = next(vae.parameters())
    out = []
    for start in range(0, frames.shape[0], chunk):
        pixels = frames[start:start + chunk].permute(0, 3, 1, 2).to(parameter.device, parameter.dtype) * 2 - 1
        out.append(vae.encode(pixels).latent_dist.mean.float().cpu())
    return torch.cat(out) * float(vae.config.scaling_factor)


def prepare_clips(source: ModelSource, clips: list[VideoClip], prompts: list[str], tokenizer: Any,
                  device: torch.device, extra: list[str] = (), appearance_augment: int = 0,
                  seed: int = 0) -> tuple[list[TrainingClip], torch.Tensor | None]:
    """Encode every clip (and its ``appearance_augment`` recoloured copies, :mod:`sma.augment`) with the source's
    VAE and every prompt with its text encoder, each model freed right after use. ``extra`` prompts (e.g. the
    validation samples') are encoded apart, so the clips' embeddings are the same with or without them; returns
    ``[E, 77, D]`` for them (None without)."""
    vae = source.vae().to(device)
    copies = with_recoloured_copies([clip.frames for clip in clips], appearance_augment, seed)
    latents = [encode_frames(vae, frames) for frames, _, _ in copies]
    del vae
    free_memory(device)
    text_encoder = source.text_encoder().to(device)
    embeddings = encode_prompts(text_encoder, tokenizer, prompts)  # [N, 77, D]
    extra_embeddings = encode_prompts(text_encoder, tokenizer, list(extra)) if extra else None
    del text_encoder
    free_memory(device)
    encoded = [TrainingClip(z, embeddings[i:i + 1], Path(clips[i].path).name + (f" recoloured {k}" if k else ""),
                            motion_only=k > 0) for z, (_, i, k) in zip(latents, copies)]
    return encoded, extra_embeddings


class VideoTrainingSource:
    """The :class:`sma.training.TrainingSource` of the command: read videos + prompts, a :class:`ModelSource`;
    ``validation``: the (prompt, negative prompt) of validation samples, encoded with the clips' prompts."""

    def __init__(self, models: ModelSource, clips: list[VideoClip], prompts: list[str], tokenizer: Any,
                 validation: tuple[str, str] | None = None) -> None:
        self.models, self.clips, self.prompts, self.tokenizer = models, clips, prompts, tokenizer
        self.validation_texts = validation
        self.validation: ValidationPrompt | None = None

    def training_clips(self, device: torch.device, appearance_augment: int = 0, seed: int = 0) -> list[TrainingClip]:
        encoded, extra = prepare_clips(self.models, self.clips, self.prompts, self.tokenizer, device,
                                       list(self.validation_texts or ()), appearance_augment, seed)
        if extra is not None:
            self.validation = ValidationPrompt(extra[:1].cpu(), extra[1:2].cpu())
        self.clips = []  # the frames; the latents are all training needs
        return encoded

    def validation_prompt(self) -> ValidationPrompt | None:
        """The validation samples' text embeddings (after :meth:`training_clips`), or None."""
        return self.validation

    def motion_unet(self, dtype: torch.dtype) -> nn.Module:
        unet = self.models.motion_unet(dtype)
        self.models = None  # type: ignore[assignment]
        return unet


# --- previews ------------------------------------------------------------------------------------------

class PreviewWriter:
    """Writes the trainer's previews ``[F, 3, h, w]`` as ``step_NNNNNN.png`` (a grid) and ``.gif``."""

    def __init__(self, folder: Path, fps: float) -> None:
        self.folder, self.fps = folder, fps
        folder.mkdir(parents=True, exist_ok=True)

    def __call__(self, step: int, frames: torch.Tensor) -> None:
        images = frames_to_uint8(frames, PREVIEW_UPSCALE)
        save_png(frame_grid(images), self.folder / f"step_{step:06d}.png")
        save_gif(images, self.folder / f"step_{step:06d}.gif", self.fps)


# --- the command ---------------------------------------------------------------------------------------

def _describe(clips: list[VideoClip], plan: TrainPlan) -> str:
    listing = "; ".join(f"{Path(c.path).name}: {c.frames.shape[0]} frames {c.frames.shape[2]}x{c.frames.shape[1]} "
                        f"at {c.fps:g} fps" for c in clips)
    return f"{len(clips)} clip(s): {listing}; training on {plan.device} for {plan.config.schedule.steps} steps"


def run(args: argparse.Namespace, source_factory: SourceFactory = open_checkpoint_source) -> int:
    """Run ``train``; returns the exit code (0, or 130 when interrupted)."""
    plan = plan_training(args)
    clips = [read_video(path, plan.video_options) for path in plan.videos]
    print(_describe(clips, plan))
    if plan.device.type == "cpu":
        print("note: training on the CPU; a full-size SD1.5 step takes tens of seconds or more.", file=sys.stderr)
    motion, info = load_motion_module(plan.motion_module)
    tokenizer = load_clip_tokenizer(plan.tokenizer_dir)
    fps = [clip.fps for clip in clips]
    validation = (args.validation_prompt, args.validation_negative) if args.validation_prompt is not None else None
    source = VideoTrainingSource(source_factory(plan, motion), clips, plan.prompts, tokenizer, validation)
    del motion, clips
    preview = PreviewWriter(plan.previews, sum(fps) / len(fps)) if plan.previews else None

    extra = {"videos": [p.name for p in plan.videos], "prompts": plan.prompts, "checkpoint": plan.checkpoint.name,
             "motion_module": plan.motion_module.name, "fps": [round(f, 3) for f in fps]}
    with terminal_progress(plan.config.schedule.steps, on_preview=preview) as callbacks:
        outcome = train_motion_lora(source, plan.config, plan.out, device=plan.device, motion_info=info,
                                    resume_from=plan.resume, metadata=extra, callbacks=callbacks,
                                    stop_is_interruption=True)
    lora, loss_png = outcome.path, save_loss_curve(outcome.result, outcome.path, outcome.interrupted)
    if outcome.interrupted:
        return report_interrupted(outcome, lora, f"the same command plus --resume {outcome.result.checkpoint}")
    print(f"saved the motion LoRA: {lora}")
    print(f"loss curve: {loss_png}")
    if plan.previews:
        print(f"previews: {plan.previews}")
    if outcome.result.checkpoint is not None:
        print(f"checkpoints: {outcome.result.checkpoint.parent}")
    print("use it: copy it into ComfyUI/models/animatediff_motion_lora and load it with AnimateDiff-Evolved's "
          "'Load AnimateDiff LoRA' node on the same motion module.")
    return 0
