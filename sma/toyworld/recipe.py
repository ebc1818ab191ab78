"""The one recipe for a motion LoRA on the toy base: its settings, its trainer, and the demo's task.

The demo (through :func:`sma.training.train_motion_lora` with :class:`ToyBaseSource`), the SMA ablation, the
appearance-transfer bench and the tests (through :func:`toy_trainer`) all take their settings from
:func:`toy_train_config` and their model and clip from :class:`ToyBaseSource`, so a change of recipe reaches each.
"""
from __future__ import annotations

from dataclasses import replace

import torch
from diffusers import DDPMScheduler
from torch import nn

from ..training import TrainConfig, Trainer, TrainingClip
from .base import load_base, noise_scheduler
from ..augment import with_recoloured_copies
from .codec import embed_appearance, encode
from .transfer import TransferTask, make_task, new_subject, retarget
from .world import Appearance, Nuisance, random_appearance, render, translation, with_appearance

TOY_RANK = 16
TOY_LEARNING_RATE = 3e-3
"""The motion LoRA's learning rate; the spatial LoRA learns at a third of it."""
TOY_TARGETS = ("attention", "ff", "proj")
TOY_TIMESTEP_MIN = 400
"""Train on the noisier part of the schedule (t >= 400), where the layout and so the motion of a clip is decided."""
TOY_SAMPLE_STEPS = 25
"""Sampling steps of the samples a toy-world LoRA is judged by."""
DEMO_VELOCITY = (1.0, -0.5)
"""The demo's reference motion M, px/frame (x right, y down: up and to the right)."""


def toy_train_config(steps: int, seed: int, *, rank: int = TOY_RANK, learning_rate: float = TOY_LEARNING_RATE,
                     targets: tuple[str, ...] = TOY_TARGETS, timestep_min: int = TOY_TIMESTEP_MIN,
                     **settings) -> TrainConfig:
    """The toy recipe's :class:`TrainConfig`: fp32 and no gradient checkpointing (a tiny model on the CPU), SMA
    ``plus`` unless ``settings`` (any other training setting) say otherwise."""
    recipe = {"steps": steps, "seed": seed, "rank": rank, "learning_rate": learning_rate,
              "spatial_learning_rate": learning_rate / 3, "targets": targets, "timestep_min": timestep_min,
              "precision": "fp32", "gradient_checkpointing": False, "sma_mode": "plus"}
    return TrainConfig.from_flat({**recipe, **settings})


class ToyBaseSource:
    """The toy world as a :class:`~sma.training.TrainingSource`: the task's reference clip (already latents and an
    appearance embedding) and a fresh copy of the toy base (``base``: a folder with its files, default the shipped
    one), kept as :attr:`model` so that it can sample with its adapters once trained."""

    def __init__(self, task: TransferTask, base: str | None = None, matching_tokens: bool = False) -> None:
        self.task, self.base, self.matching_tokens = task, base, matching_tokens
        self.device = torch.device("cpu")
        self.model: nn.Module | None = None

    def training_clips(self, device: torch.device, appearance_augment: int = 0, seed: int = 0) -> list[TrainingClip]:
        """The reference clip, and ``appearance_augment`` recoloured copies of it for the motion path
        (:func:`recoloured`; ``matching_tokens`` as given to the source)."""
        self.device = torch.device(device)
        original = TrainingClip(self.task.latents, self.task.tokens, f"{self.task.family} reference")
        return [original, *recoloured(self.task, appearance_augment, seed, self.matching_tokens)]

    def motion_unet(self, dtype: torch.dtype) -> nn.Module:
        self.model = load_base(self.base, self.device)
        return self.model

    def noise_scheduler(self) -> DDPMScheduler:
        return noise_scheduler()


def recoloured(task: TransferTask, count: int, seed: int, matching_tokens: bool = False) -> list[TrainingClip]:
    """``count`` motion-only copies of the reference clip in other colours.

    ``matching_tokens`` False (what a user has: a prompt that describes the original): the frames go through
    :func:`sma.augment.colour_variants` and keep the original's appearance tokens. True (an oracle the toy world
    allows): the reference's motion is drawn again with other hues, brightness and background grey, with the
    tokens of that appearance.
    """
    if not matching_tokens:
        return [TrainingClip(encode(frames), task.tokens, f"recoloured {k}", motion_only=True)
                for frames, _, k in with_recoloured_copies([task.frames], count, seed)[1:]]
    clips = []
    for k in range(count):
        g = torch.Generator().manual_seed(seed * 1000 + k)
        fresh = random_appearance(1, int(task.reference.appearance.present[0].sum()), generator=g)
        look = replace(task.reference.appearance, hue=fresh.hue, value=fresh.value, grey=fresh.grey)
        scene = with_appearance(task.reference, look)
        frames = render(scene, Nuisance(), g)[0]
        clips.append(TrainingClip(encode(frames), embed_appearance(look, task.tokens.shape[-1], scene.width),
                                  f"recoloured {k + 1}", motion_only=True))
    return clips


def toy_trainer(task: TransferTask, config: TrainConfig, base: str | None = None,
                device: torch.device | str = "cpu", matching_tokens: bool = False) -> Trainer:
    """A :class:`Trainer` of the recipe's motion LoRA for the task's reference clip (and its recoloured copies,
    ``appearance_augment`` of the config, :func:`recoloured`), on :class:`ToyBaseSource`'s model
    (``trainer.unet``, with its adapters once trained)."""
    source = ToyBaseSource(task, base, matching_tokens)
    sampling = config.sampling
    clips = source.training_clips(torch.device(device), sampling.appearance_augment, sampling.seed)
    return Trainer(source.motion_unet(torch.float32), clips, source.noise_scheduler(), config, device=device)


def reference_appearance(seed: int) -> Appearance:
    """Appearance A: one red, solid bar (background drawn from ``seed``)."""
    app = random_appearance(1, 1, generator=torch.Generator().manual_seed(seed))
    app.hue.zero_()
    app.kind.zero_()
    app.striped.zero_()
    app.size.fill_(2.8)
    app.aspect.fill_(2.0)
    return app


def demo_task(seed: int) -> TransferTask:
    """The demo's reference clip (motion :data:`DEMO_VELOCITY`, appearance A, a red bar) and its new subject B:
    another colour, shape, size and background (:func:`~sma.toyworld.transfer.new_subject`)."""
    task = make_task("translate", seed, reference=translation(reference_appearance(seed), DEMO_VELOCITY))
    return retarget(task, new_subject(task.reference.appearance, seed))
