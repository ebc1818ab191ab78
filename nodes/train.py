"""Train Motion LoRA and SMA Loss Options: ``sma.training.train_motion_lora`` as nodes, plus clip chaining."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import folder_paths
import numpy as np
import torch
from comfy_api.v0_0_2 import io

from ..sma.augment import with_recoloured_copies
from ..sma.errors import SMAInputError
from ..sma.models.build import build_motion_unet
from ..sma.models.config import find_base
from ..sma.models.families import BaseSpec, bases
from ..sma.paths import safe_output_path
from ..sma.preview import frames_to_image_batch, frames_to_uint8
from ..sma.spectral import MODES as WAVELET_MODES
from ..sma.training import (
    DEFAULTS,
    TrainCallbacks,
    TrainConfig,
    TrainingClip,
    ValidationPrompt,
    latest_checkpoint,
    train_motion_lora,
)
from ..sma.training.config import AUTO, INTERFACE_OFF, from_interface, limit, parse_numbers, to_interface
from ..sma.viz import as_image_batch, loss_curve_image
from .common import CATEGORY, MOTION_MODELS_FOLDER, motion_lora_folder, user_errors

log = logging.getLogger("comfyui-sma")
ReferenceClips = io.Custom("SMA_REFERENCE_CLIPS")
LossOptions = io.Custom("SMA_LOSS_OPTIONS")
MotionOptions = io.Custom("SMA_MOTION_OPTIONS")
TARGET_CHOICES = ("attention", "attention_qk", "attention,ff", "attention,ff,proj", "attention_qk,ff,proj")
"""The motion LoRA's layer groups the Motion Options node offers (comma lists of ``targets``)."""
PREVIEW_MAX_SIZE = 512
NODE_CHECKPOINT_EVERY = 100
NODE_PREVIEW_EVERY = 25
"""The node checkpoints and previews by default (the library does neither unless asked)."""
CHECKPOINT_FOLDER = "sma_checkpoints"  # under ComfyUI's output folder, one sub-folder per LoRA name


@dataclass(frozen=True)
class ReferenceClip:
    """One more reference clip for the trainer: frames ``[F, H, W, 3]`` and an optional prompt."""

    frames: torch.Tensor
    positive: list | None = None


class AddReferenceClip(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SMA_AddReferenceClip",
            display_name="Add Reference Clip (SMA)",
            category=f"{CATEGORY}/train",
            description=(
                "Adds another reference clip for Train Motion LoRA: the motion common to all clips is learned. "
                "Chain several; clips trained in one step must have the same size."),
            inputs=[
                io.Image.Input("frames", tooltip="The clip's frames (e.g. from Load Reference Video)."),
                io.Conditioning.Input("positive", optional=True,
                                      tooltip="This clip's prompt; without it the trainer's positive prompt is used."),
                ReferenceClips.Input("more_clips", optional=True, tooltip="Earlier clips of the chain."),
            ],
            outputs=[ReferenceClips.Output(display_name="clips")],
        )

    @classmethod
    def execute(cls, frames, positive=None, more_clips=None) -> io.NodeOutput:
        return io.NodeOutput([*(more_clips or []), ReferenceClip(frames, positive)])


def _text_embedding(positive: list) -> torch.Tensor:
    """The first conditioning tensor of a CONDITIONING as a normal (non-inference) tensor ``[1, T, D]``."""
    if not positive:
        raise SMAInputError("the positive conditioning is empty; connect a CLIP Text Encode node.")
    with torch.inference_mode(False):
        return positive[0][0][:1].float().cpu().clone()


def _encode(vae, frames: torch.Tensor, scale_factor: float) -> torch.Tensor:
    """Frames ``[F, H, W, 3]`` -> VAE-scaled latents ``[F, 4, H/8, W/8]`` on the CPU, as a normal tensor
    (encoded without autograd, as ComfyUI runs nodes; cloned out of inference mode for training)."""
    with torch.no_grad():
        latents = (vae.encode(frames[..., :3]).float() * scale_factor).cpu()
    with torch.inference_mode(False):
        return latents.clone()


def _validation_prompt(every: int, positive: list | None, negative: list | None) -> ValidationPrompt | None:
    """The text embeddings of validation samples, or None when they are off."""
    if not every:
        return None
    if not positive:
        raise SMAInputError("validation_every > 0 needs validation_prompt: connect a CLIP Text Encode node.")
    return ValidationPrompt(_text_embedding(positive), _text_embedding(negative) if negative else None)


def _check_base(model) -> BaseSpec:
    """The base of ComfyUI's ``MODEL`` from the family table; an error naming the supported bases otherwise."""
    config = getattr(model.model, "model_config", None)
    unet_config = getattr(config, "unet_config", {}) or {}
    base = find_base(unet_config.get("context_dim"), unet_config.get("model_channels"))
    if base is None:
        name = type(config).__name__ if config is not None else "unknown"
        names = " or ".join(b.name for b in bases())
        raise SMAInputError(f"the model is {name}, but AnimateDiff motion modules of this pack "
                             f"are for {names}: load an {names} checkpoint.")
    return base


def _preview_image(frames: torch.Tensor, pixels_per_latent: int):
    """Up to 4 preview frames ``[F, 3, h, w]`` side by side at pixel size, as a PIL image for the live preview."""
    from PIL import Image

    return Image.fromarray(np.concatenate(list(frames_to_uint8(frames[:4], pixels_per_latent)), axis=1))


class ComfyProgress:
    """Trainer callbacks that drive ComfyUI's progress bar, live preview and Cancel button."""

    def __init__(self, steps: int, pixels_per_latent: int) -> None:
        import comfy.utils

        self.bar = comfy.utils.ProgressBar(steps)
        self.pixels_per_latent = pixels_per_latent

    @staticmethod
    def interrupted() -> bool:
        import comfy.model_management as mm

        return mm.processing_interrupted()

    def on_step(self, report) -> None:
        if not self.interrupted():  # the bar's hook raises on cancel: leave stopping to should_stop
            self.bar.update_absolute(report.step, report.total)
        if report.sma_gradient_share is not None:
            log.info("SMA: step %d, SMA gradient share %.0f%% of the denoising loss's", report.step,
                     100 * report.sma_gradient_share)

    def on_preview(self, step: int, frames: torch.Tensor) -> None:
        if not self.interrupted():
            self.bar.update_absolute(step, None, ("JPEG", _preview_image(frames, self.pixels_per_latent), PREVIEW_MAX_SIZE))

    def callbacks(self) -> TrainCallbacks:
        return TrainCallbacks(on_step=self.on_step, on_preview=self.on_preview, should_stop=self.interrupted,
                              on_validation=self.on_preview)


class TrainMotionLoRA(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SMA_TrainMotionLoRA",
            display_name="Train Motion LoRA (SMA)",
            category=f"{CATEGORY}/train",
            description=(
                "Learns the motion of the reference frames as an AnimateDiff motion LoRA (MotionDirector training with "
                "Spectral Motion Alignment). Saves it into models/animatediff_motion_lora, where Apply Motion LoRA and "
                "AnimateDiff-Evolved's Load AnimateDiff LoRA find it. Cancel stops at the next step and still saves. "
                "Re-queueing an unchanged graph does not retrain."),
            is_output_node=True,
            inputs=[
                io.Model.Input("model", tooltip="The SD1.5 checkpoint's MODEL (the base the motion is learned on)."),
                io.Vae.Input("vae", tooltip="Encodes the reference frames once; not kept in memory while training."),
                io.Conditioning.Input("positive", tooltip="A prompt describing the reference clip (or an empty prompt)."),
                io.Image.Input("frames", tooltip="Reference frames from Load Reference Video; sides multiples of 8."),
                io.Combo.Input("motion_model", options=folder_paths.get_filename_list(MOTION_MODELS_FOLDER),
                               tooltip="AnimateDiff motion module to train against (v1, v2, v3 or AnimateLCM; "
                                       "from models/animatediff_models). Use the one you will generate with."),
                io.String.Input("lora_name", default="sma_motion",
                                tooltip="File name of the LoRA (letters, digits, spaces, '.', '_' and '-'; saved as "
                                        "<name>.safetensors; an existing file of that name is replaced)."),
                setting_input("steps", "Optimizer steps. 300-500 for one clip; fewer if the motion overpowers prompts."),
                setting_input("learning_rate", "Learning rate of the motion (temporal) LoRA.", step=1e-5),
                setting_input("spatial_learning_rate", "Learning rate of the spatial LoRA that absorbs the clip's "
                                                       "appearance.", step=1e-5),
                setting_input("rank", "LoRA rank: 16-64 is typical; higher learns more detail and overfits sooner."),
                setting_input("sma_mode", "Spectral Motion Alignment: 'plus' (fixed formulation, recommended), 'paper' "
                                          "(the reference code's formulas) or 'off' (plain MotionDirector)."),
                setting_input("lambda_global", "Weight of the wavelet (global motion) loss; the paper suggests "
                                               "0.2-0.5.", step=0.01),
                setting_input("lambda_local", "Weight of the Fourier (local motion) loss; the paper suggests 0.1-0.3.",
                              step=0.01),
                setting_input("wavelet_levels", "Wavelet levels of the global loss (0 = automatic from the frame "
                                                "count)."),
                setting_input("spatial_path", "MotionDirector's spatial path: keeps the clip's look out of the "
                                              "motion LoRA."),
                setting_input("seed", "Seed of noise, timesteps and frame windows.", control_after_generate=False),
                setting_input("checkpoint_every", "Save a resumable checkpoint every N steps (0 = only when "
                                                  "cancelled).", default=NODE_CHECKPOINT_EVERY),
                setting_input("preview_every", "Show a preview of the denoised estimate every N steps (0 = never).",
                              default=NODE_PREVIEW_EVERY),
                io.Boolean.Input("resume", default=False,
                                 tooltip="Continue from the last checkpoint of this LoRA name (same settings)."),
                ReferenceClips.Input("more_clips", optional=True,
                                     tooltip="More reference clips from Add Reference Clip."),
                LossOptions.Input("loss_options", optional=True,
                                  tooltip="Advanced SMA loss settings from SMA Loss Options (default: its defaults)."),
                setting_input("validation_every", "Every N steps a validation sample (0 = never): 8 DDIM steps of "
                                                  "validation_prompt with the LoRA so far and a fixed seed, shown as "
                                                  "the preview and saved as an animated WebP beside the checkpoints. "
                                                  "Costs about 5 training steps each.", optional=True),
                io.Conditioning.Input("validation_prompt", optional=True,
                                      tooltip="What validation samples show (a new subject doing the learned motion)."),
                io.Conditioning.Input("validation_negative", optional=True,
                                      tooltip="Negative prompt of validation samples (turns on guidance 7.5)."),
                MotionOptions.Input("motion_options", optional=True,
                                    tooltip="Where the motion LoRA sits and recoloured copies against copying the "
                                            "clip's look, from SMA Motion Options (default: its defaults)."),
            ],
            outputs=[
                io.String.Output(display_name="lora_name", tooltip="The saved file, as listed in animatediff_motion_lora."),
                io.Image.Output(display_name="loss_curve", tooltip="Each loss component over the steps."),
                io.Image.Output(display_name="preview", tooltip="The last preview frames."),
                io.Image.Output(display_name="validation", tooltip="The last validation sample (latent colours)."),
            ],
        )

    @classmethod
    def execute(cls, model, vae, positive, frames, motion_model: str, lora_name: str, steps: int,
                learning_rate: float, spatial_learning_rate: float, rank: int, sma_mode: str, lambda_global: float,
                lambda_local: float, wavelet_levels: int, spatial_path: bool, seed: int, checkpoint_every: int,
                preview_every: int, resume: bool, more_clips=None, loss_options=None, validation_every: int = 0,
                validation_prompt=None, validation_negative=None, motion_options=None) -> io.NodeOutput:
        import comfy.model_management as mm

        with user_errors("Train Motion LoRA"):
            scale = _check_base(model).pixels_per_latent
            out_path = safe_output_path(motion_lora_folder(), lora_name)
            checkpoint_dir = os.path.join(folder_paths.get_output_directory(), CHECKPOINT_FOLDER, out_path.stem)
            config = TrainConfig.from_flat(from_interface({
                "steps": steps, "learning_rate": learning_rate, "spatial_learning_rate": spatial_learning_rate,
                "rank": rank, "sma_mode": sma_mode, "lambda_global": lambda_global, "lambda_local": lambda_local,
                "wavelet_levels": wavelet_levels, "spatial_path": spatial_path, "seed": seed,
                "checkpoint_every": checkpoint_every, "checkpoint_dir": checkpoint_dir,
                "preview_every": preview_every, "validation_every": validation_every, **(loss_options or {}),
                **(motion_options or {})}))
            validation = _validation_prompt(validation_every, validation_prompt, validation_negative)
            motion_path = folder_paths.get_full_path_or_raise(MOTION_MODELS_FOLDER, motion_model)
            mm.unload_all_models()  # frees VRAM and restores unpatched base weights
            resume_from = latest_checkpoint(checkpoint_dir) if resume else None
            if resume and resume_from is None:
                log.warning("SMA: resume asked, but %s holds no checkpoint; training from the start", checkpoint_dir)
            source = ComfySource(model, vae, [ReferenceClip(frames, positive), *(more_clips or [])], motion_path)
            outcome = train_motion_lora(source, config, out_path, device=mm.get_torch_device(),
                                        resume_from=resume_from, callbacks=ComfyProgress(steps, scale).callbacks(),
                                        metadata={"motion_module": motion_model, "name": out_path.stem},
                                        validation=validation)
        result = outcome.result
        log.info("SMA: saved %s after %d steps%s", out_path, result.step, " (cancelled)" if result.stopped_early else "")
        mm.throw_exception_if_processing_interrupted()  # cancelled: the partial LoRA is saved, the prompt stops
        curve = as_image_batch(loss_curve_image(result.losses))
        preview, sample = (frames_to_image_batch(f, scale) if f is not None else torch.zeros(1, 64, 64, 3)
                           for f in (result.last_preview, result.last_validation))
        return io.NodeOutput(out_path.name, curve, preview, sample)


class ComfySource:
    """The :class:`sma.training.TrainingSource` of the node: ComfyUI's MODEL, VAE and conditioning."""

    def __init__(self, model, vae, clips: list[ReferenceClip], motion_path: str) -> None:
        self.model, self.vae, self.clips, self.motion_path = model, vae, clips, motion_path

    def training_clips(self, device: torch.device, appearance_augment: int = 0, seed: int = 0) -> list[TrainingClip]:
        import comfy.model_management as mm

        scale = float(self.model.model.latent_format.scale_factor)
        text = _text_embedding(self.clips[0].positive)
        texts = [_text_embedding(clip.positive) if clip.positive else text for clip in self.clips]
        frames = [clip.frames[..., :3] for clip in self.clips]
        clips = [TrainingClip(latents=_encode(self.vae, f, scale), text_embedding=texts[i],
                              name=f"clip {i + 1}" + (f" recoloured {k}" if k else ""), motion_only=k > 0)
                 for f, i, k in with_recoloured_copies(frames, appearance_augment, seed)]
        mm.unload_all_models()  # the VAE that encoded the clips leaves the device before training
        return clips

    def motion_unet(self, dtype: torch.dtype) -> torch.nn.Module:
        with torch.inference_mode(False):
            weights = {k: v.detach().clone() if v.is_inference() else v.detach()
                       for k, v in self.model.model.diffusion_model.state_dict().items()}
            return build_motion_unet(weights, self.motion_path, dtype=dtype)


class SMALossOptions(io.ComfyNode):
    """The SMA loss's advanced settings, for Train Motion LoRA's optional ``loss_options`` input."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SMA_LossOptions",
            display_name="SMA Loss Options (SMA)",
            category=f"{CATEGORY}/train",
            description=("Advanced settings of the Spectral Motion Alignment loss; connect to Train Motion LoRA's "
                         "loss_options. Mode, lambdas and wavelet levels stay on the trainer."),
            inputs=[
                io.String.Input("level_weights", default="",
                                tooltip="Weight per wavelet band, comma-separated: the approximation, then the finest "
                                        "to the coarsest detail (levels + 1 values). Empty = all 1."),
                io.String.Input("wavelet", default=DEFAULTS["wavelet"],
                                tooltip="A discrete PyWavelets wavelet for the global term (haar, db2, sym4, ...)."),
                io.Combo.Input("wavelet_mode", options=[AUTO, *WAVELET_MODES], default=AUTO,
                               tooltip="DWT padding; auto = zero in paper mode, symmetric in plus mode."),
                setting_input("weight_delta", "Low-frequency weight map of the local term: delta.", step=0.01),
                setting_input("weight_base", "Low-frequency weight map of the local term: base.", step=0.01),
                setting_input("weight_sharpness", "Plus mode: exponent of the weight map (0 flat, 1 the paper's, "
                                                  "more favours low frequencies).", step=0.05),
                setting_input("snr_gamma", "Plus mode: min-SNR gamma of the timestep weight (0 = off).", step=0.1),
                setting_input("phase_loss", "Plus mode: phase distance, wrap (1 - cos) or raw (|dphi|)."),
            ],
            outputs=[LossOptions.Output(display_name="loss_options")],
        )

    @classmethod
    def execute(cls, level_weights: str, wavelet: str, wavelet_mode: str, weight_delta: float, weight_base: float,
                weight_sharpness: float, snr_gamma: float, phase_loss: str) -> io.NodeOutput:
        with user_errors("SMA Loss Options"):
            options = loss_options(level_weights, wavelet, wavelet_mode, weight_delta, weight_base,
                                   weight_sharpness, snr_gamma, phase_loss)
            TrainConfig.from_flat(options)  # check now, at the node that holds the bad value
        return io.NodeOutput(options)


class SMAMotionOptions(io.ComfyNode):
    """The motion LoRA's placement and appearance augmentation, for Train Motion LoRA's ``motion_options`` input."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SMA_MotionOptions",
            display_name="SMA Motion Options (SMA)",
            category=f"{CATEGORY}/train",
            description=("Settings against a motion LoRA that copies its clip instead of learning its motion; "
                         "connect to Train Motion LoRA's motion_options."),
            inputs=[
                io.Combo.Input("targets", options=list(TARGET_CHOICES), default=",".join(DEFAULTS["targets"]),
                               tooltip="Motion-module layers the LoRA trains: attention (queries, keys, values, "
                                       "outputs), attention_qk (queries and keys only: where frames look, not what "
                                       "they carry), optionally the feed-forward (ff) and projection (proj) layers."),
                setting_input("appearance_augment", "Recoloured copies of each clip (hue, saturation, contrast, "
                                                    "grey; the same for all its frames) that only the motion LoRA "
                                                    "sees, so the clip's colours are no cue (0 = off)."),
                setting_input("objective", "What the motion path fits: motiondirector (the noise, plus its "
                                           "appearance-debiased form) or vmc (only the direction of the noise's "
                                           "frame-to-frame change, as VMC)."),
                setting_input("gradient_share_every", "Every N steps, log how much of the motion LoRA's gradient "
                                                      "comes from SMA against the denoising loss (0 = never)."),
            ],
            outputs=[MotionOptions.Output(display_name="motion_options")],
        )

    @classmethod
    def execute(cls, targets: str, appearance_augment: int, objective: str, gradient_share_every: int
                ) -> io.NodeOutput:
        options = {"targets": tuple(t.strip() for t in targets.split(",")), "appearance_augment": appearance_augment,
                   "objective": objective, "gradient_share_every": gradient_share_every}
        with user_errors("SMA Motion Options"):
            TrainConfig.from_flat(options)  # check now, at the node that holds the bad value
        return io.NodeOutput(options)


def loss_options(level_weights: str, wavelet: str, wavelet_mode: str, weight_delta: float, weight_base: float,
                 weight_sharpness: float, snr_gamma: float, phase_loss: str) -> dict[str, Any]:
    """The node's widgets as library settings ("", "auto" and 0 mean the automatic choice or off)."""
    return from_interface({
        "level_weights": parse_numbers("level_weights", level_weights), "wavelet": wavelet.strip(),
        "wavelet_mode": wavelet_mode, "weight_delta": weight_delta, "weight_base": weight_base,
        "weight_sharpness": weight_sharpness, "snr_gamma": snr_gamma, "phase_loss": phase_loss})


def setting_input(name: str, tooltip: str, *, default: Any = None, step: float | None = None,
                  optional: bool = False, **extra: Any) -> io.Input:
    """The widget of one training setting: its name, its default and its bounds from the library's config
    (an optional setting's 0 means automatic or off, as :func:`sma.training.config.from_interface` reads it)."""
    value = to_interface(name, DEFAULTS[name]) if default is None else default
    bound = limit(name)
    if bound is None:
        raise ValueError(f"{name} has no bounds to make a widget of")
    if bound.switch:
        return io.Boolean.Input(name, default=value, tooltip=tooltip, optional=optional)
    if bound.choices is not None:
        return io.Combo.Input(name, options=list(bound.choices), default=value, tooltip=tooltip, optional=optional)
    low = INTERFACE_OFF if bound.optional else bound.low
    high = bound.high if bound.high is not None else bound.below
    if bound.whole:
        return io.Int.Input(name, default=value, min=int(low), max=int(high), tooltip=tooltip, optional=optional,
                            **extra)
    return io.Float.Input(name, default=value, min=low, max=high, step=step, tooltip=tooltip, optional=optional,
                          **extra)
