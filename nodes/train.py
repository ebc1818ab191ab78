"""Train Motion LoRA (SMA): the trainer of ``sma.train`` as a ComfyUI node, plus clip chaining."""
from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import os
from dataclasses import dataclass

import folder_paths
import torch
from comfy_api.latest import io

from ..sma.atomic import check_writable
from ..sma.lora import save_motion_lora
from ..sma.models.build import build_motion_unet, make_noise_scheduler
from ..sma.paths import safe_output_path
from ..sma.train import TrainCallbacks, TrainConfig, Trainer, TrainingClip, latest_checkpoint
from ..sma.viz import as_image_batch, loss_curve_image
from .common import CATEGORY, MOTION_LORA_FOLDER, MOTION_MODELS_FOLDER, user_errors

log = logging.getLogger("comfyui-sma")
ReferenceClips = io.Custom("SMA_REFERENCE_CLIPS")
PREVIEW_MAX_SIZE = 512
LATENT_SCALE = 8  # SD latents are 1/8 of the image side
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


def motion_lora_folder() -> str:
    """Where trained LoRAs go: ``models/animatediff_motion_lora`` (listed by ADE's loader)."""
    return os.path.join(folder_paths.models_dir, MOTION_LORA_FOLDER)


def _text_embedding(positive: list) -> torch.Tensor:
    """The first conditioning tensor of a CONDITIONING as a normal (non-inference) tensor ``[1, T, D]``."""
    if not positive:
        raise ValueError("Train Motion LoRA: the positive conditioning is empty; connect a CLIP Text Encode node.")
    with torch.inference_mode(False):
        return positive[0][0][:1].float().cpu().clone()


def _encode(vae, frames: torch.Tensor, scale_factor: float) -> torch.Tensor:
    """Frames ``[F, H, W, 3]`` -> VAE-scaled latents ``[F, 4, H/8, W/8]`` on the CPU, as a normal tensor
    (encoded without autograd, as ComfyUI runs nodes; cloned out of inference mode for training)."""
    with torch.no_grad():
        latents = (vae.encode(frames[..., :3]).float() * scale_factor).cpu()
    with torch.inference_mode(False):
        return latents.clone()


def _check_sd15(model) -> None:
    config = getattr(model.model, "model_config", None)
    unet_config = getattr(config, "unet_config", {}) or {}
    if unet_config.get("context_dim") != 768 or unet_config.get("model_channels") != 320:
        name = type(config).__name__ if config is not None else "unknown"
        raise ValueError(f"Train Motion LoRA: the model is {name}, but AnimateDiff motion modules of this pack "
                         "are for Stable Diffusion 1.5: load an SD1.5 checkpoint.")


def _pixel_size(frames: torch.Tensor) -> torch.Tensor:
    """Latent-resolution preview frames ``[F, 3, h, w]`` -> ``[F, 3, 8h, 8w]`` (nearest)."""
    return torch.nn.functional.interpolate(frames.float(), scale_factor=LATENT_SCALE, mode="nearest")


def _preview_image(frames: torch.Tensor):
    """Up to 4 preview frames ``[F, 3, h, w]`` side by side as a PIL image for the node's live preview."""
    from PIL import Image

    strip = torch.cat(list(_pixel_size(frames[:4]).clamp(0, 1)), dim=-1)  # [3, 8h, 4 * 8w]
    array = (strip.permute(1, 2, 0) * 255).round().to(torch.uint8).cpu().numpy()
    return Image.fromarray(array)


def _as_image(frames_rgb: torch.Tensor) -> torch.Tensor:
    """``[F, 3, h, w]`` 0..1 -> IMAGE ``[F, h, w, 3]``."""
    return frames_rgb.float().clamp(0, 1).permute(0, 2, 3, 1).cpu().contiguous()


def _free_memory() -> None:
    """Collect garbage, empty the device cache and give freed heap pages back to the OS (glibc keeps them
    otherwise, so ComfyUI's memory would grow by the training model's size with every training)."""
    import comfy.model_management as mm

    gc.collect()
    mm.soft_empty_cache()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class ComfyProgress:
    """Trainer callbacks that drive ComfyUI's progress bar, live preview and Cancel button."""

    def __init__(self, steps: int) -> None:
        import comfy.utils

        self.bar = comfy.utils.ProgressBar(steps)

    @staticmethod
    def interrupted() -> bool:
        import comfy.model_management as mm

        return mm.processing_interrupted()

    def on_step(self, report) -> None:
        if not self.interrupted():  # the bar's hook raises on cancel: leave stopping to should_stop
            self.bar.update_absolute(report.step, report.total)

    def on_preview(self, step: int, frames: torch.Tensor) -> None:
        if not self.interrupted():
            self.bar.update_absolute(step, None, ("JPEG", _preview_image(frames), PREVIEW_MAX_SIZE))

    def callbacks(self) -> TrainCallbacks:
        return TrainCallbacks(on_step=self.on_step, on_preview=self.on_preview, should_stop=self.interrupted)


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
                io.Int.Input("steps", default=400, min=1, max=100000,
                             tooltip="Optimizer steps. 300-500 for one clip; fewer if the motion overpowers prompts."),
                io.Float.Input("learning_rate", default=5e-4, min=1e-7, max=1e-1, step=1e-5,
                               tooltip="Learning rate of the motion (temporal) LoRA."),
                io.Float.Input("spatial_learning_rate", default=1e-4, min=1e-7, max=1e-1, step=1e-5,
                               tooltip="Learning rate of the spatial LoRA that absorbs the clip's appearance."),
                io.Int.Input("rank", default=32, min=1, max=256,
                             tooltip="LoRA rank: 16-64 is typical; higher learns more detail and overfits sooner."),
                io.Combo.Input("sma_mode", options=["plus", "paper", "off"], default="plus",
                               tooltip="Spectral Motion Alignment: 'plus' (fixed formulation, recommended), 'paper' "
                                       "(the reference code's formulas) or 'off' (plain MotionDirector)."),
                io.Float.Input("lambda_global", default=0.4, min=0.0, max=10.0, step=0.01,
                               tooltip="Weight of the wavelet (global motion) loss; the paper suggests 0.2-0.5."),
                io.Float.Input("lambda_local", default=0.2, min=0.0, max=10.0, step=0.01,
                               tooltip="Weight of the Fourier (local motion) loss; the paper suggests 0.1-0.3."),
                io.Int.Input("wavelet_levels", default=0, min=0, max=8,
                             tooltip="Wavelet levels of the global loss (0 = automatic from the frame count)."),
                io.Boolean.Input("spatial_path", default=True,
                                 tooltip="MotionDirector's spatial path: keeps the clip's look out of the motion LoRA."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFF, control_after_generate=False,
                             tooltip="Seed of noise, timesteps and frame windows."),
                io.Int.Input("checkpoint_every", default=100, min=0, max=100000,
                             tooltip="Save a resumable checkpoint every N steps (0 = only when cancelled)."),
                io.Int.Input("preview_every", default=25, min=0, max=100000,
                             tooltip="Show a preview of the denoised estimate every N steps (0 = never)."),
                io.Boolean.Input("resume", default=False,
                                 tooltip="Continue from the last checkpoint of this LoRA name (same settings)."),
                ReferenceClips.Input("more_clips", optional=True,
                                     tooltip="More reference clips from Add Reference Clip."),
            ],
            outputs=[
                io.String.Output(display_name="lora_name", tooltip="The saved file, as listed in animatediff_motion_lora."),
                io.Image.Output(display_name="loss_curve", tooltip="Each loss component over the steps."),
                io.Image.Output(display_name="preview", tooltip="The last preview frames."),
            ],
        )

    @classmethod
    def execute(cls, model, vae, positive, frames, motion_model: str, lora_name: str, steps: int,
                learning_rate: float, spatial_learning_rate: float, rank: int, sma_mode: str, lambda_global: float,
                lambda_local: float, wavelet_levels: int, spatial_path: bool, seed: int, checkpoint_every: int,
                preview_every: int, resume: bool, more_clips=None) -> io.NodeOutput:
        import comfy.model_management as mm

        _check_sd15(model)
        with user_errors("Train Motion LoRA"):
            out_path = safe_output_path(motion_lora_folder(), lora_name)
            check_writable(out_path.parent)  # a read-only or full folder fails now, not after training
            checkpoint_dir = os.path.join(folder_paths.get_output_directory(), CHECKPOINT_FOLDER, out_path.stem)
            config = TrainConfig(
                steps=steps, lr_temporal=learning_rate, lr_spatial=spatial_learning_rate, rank=rank,
                sma_mode=sma_mode, lambda_global=lambda_global, lambda_local=lambda_local,
                sma_levels=wavelet_levels or None, spatial_lora=spatial_path, seed=seed,
                checkpoint_every=checkpoint_every, checkpoint_dir=checkpoint_dir, preview_every=preview_every)
            motion_path = folder_paths.get_full_path_or_raise(MOTION_MODELS_FOLDER, motion_model)
            mm.unload_all_models()  # frees VRAM and restores unpatched base weights
            clips = cls._clips(model, vae, positive, frames, more_clips)
            _free_memory()
            result = cls._train(model, motion_path, clips, config, resume)
            metadata = {**result.metadata, "motion_module": motion_model, "name": out_path.stem}
            save_motion_lora(out_path, result.lora_state, metadata)
        log.info("SMA: saved %s after %d steps%s", out_path, result.step, " (cancelled)" if result.stopped_early else "")
        mm.throw_exception_if_processing_interrupted()  # cancelled: the partial LoRA is saved, the prompt stops
        curve = as_image_batch(loss_curve_image(result.losses))
        preview = (_as_image(_pixel_size(result.last_preview)) if result.last_preview is not None
                   else torch.zeros(1, 64, 64, 3))
        return io.NodeOutput(out_path.name, curve, preview)

    @staticmethod
    def _clips(model, vae, positive, frames, more_clips) -> list[TrainingClip]:
        scale = float(model.model.latent_format.scale_factor)
        text = _text_embedding(positive)
        sources = [ReferenceClip(frames, positive), *(more_clips or [])]
        return [TrainingClip(latents=_encode(vae, clip.frames, scale),
                             text_embedding=_text_embedding(clip.positive) if clip.positive else text,
                             name=f"clip {i + 1}")
                for i, clip in enumerate(sources)]

    @staticmethod
    def _train(model, motion_path: str, clips: list[TrainingClip], config: TrainConfig, resume: bool):
        import comfy.model_management as mm

        device = mm.get_torch_device()
        progress = ComfyProgress(config.steps)
        resume_from = latest_checkpoint(config.checkpoint_dir) if resume else None
        if resume and resume_from is None:
            log.warning("SMA: resume asked, but %s holds no checkpoint; training from the start", config.checkpoint_dir)
        with torch.inference_mode(False):
            unet_weights = {k: v.detach().clone() if v.is_inference() else v.detach()
                            for k, v in model.model.diffusion_model.state_dict().items()}
            unet = build_motion_unet(unet_weights, motion_path,
                                     dtype=torch.float32 if device.type == "cpu" else torch.float16)
            del unet_weights
            trainer = None
            try:
                trainer = Trainer(unet, clips, make_noise_scheduler(), config, device=device)
                return trainer.run(progress.callbacks(), resume_from=resume_from)
            finally:
                del unet, trainer  # the trainer holds the model too: both go before memory is trimmed
                _free_memory()
