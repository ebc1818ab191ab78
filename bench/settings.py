"""The training configurations that the GPU bench measures and the estimator predicts, and what both do to run one.

:class:`Setting` names one configuration (family, frames, size, precision, checkpointing, ...); :func:`grid` lists
them in priority order; :func:`train_config` turns one into the trainer's :class:`~sma.training.TrainConfig`.
"""
from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # also imported by scripts run as files

from sma.lora import adapter_names, remove_lora  # noqa: E402
from sma.training import TrainConfig, TrainingClip, memory  # noqa: E402

GIB = 2**30


@dataclass(frozen=True)
class Setting:
    """One training configuration of the grid (sizes are nominal pixel sides)."""

    name: str
    family: str = "v3"
    frames: int = 16
    size: int = 512
    precision: str = "fp16"
    checkpointing: str = "pack"  # off | diffusers (resnets + spatial transformers) | pack (+ motion modules)
    spatial: bool = True
    sma: str = "plus"  # off | paper | plus
    rank: int = 32
    optimizer: str = "adamw"
    attention_slice: int = 0

    def label(self) -> str:
        return (f"{self.family} {self.frames}x{self.size} {self.precision} ckpt={self.checkpointing} "
                f"spatial={'on' if self.spatial else 'off'} sma={self.sma} r{self.rank} {self.optimizer}")


HEADLINE = Setting("headline")
PORTS = Setting("motiondirector-ports", checkpointing="diffusers", sma="off")
"""The MotionDirector AnimateDiff ports' settings: 16 frames, 512 px, fp16 autocast, rank 32, their UNet's
own gradient checkpointing (motion modules not checkpointed), spatial + temporal LoRA, no SMA."""


def grid(families: list[str]) -> list[Setting]:
    """Configurations in priority order (the most important first; duplicates removed)."""
    rows = [
        HEADLINE,
        replace(HEADLINE, name="ckpt-diffusers", checkpointing="diffusers"),
        replace(HEADLINE, name="ckpt-off", checkpointing="off"),
        replace(HEADLINE, name="sma-off", sma="off"),
        replace(HEADLINE, name="sma-paper", sma="paper"),
        replace(HEADLINE, name="spatial-off", spatial=False),
        replace(HEADLINE, name="bf16", precision="bf16"),
        replace(HEADLINE, name="rank64", rank=64),
        PORTS,
    ]
    rows += [replace(HEADLINE, name=f"grid-{f}x{s}", frames=f, size=s)
             for f in (8, 16, 24) for s in (256, 384, 512)]
    rows += [
        replace(HEADLINE, name="spatial-off-sma-off", spatial=False, sma="off"),
        replace(HEADLINE, name="adamw8bit", optimizer="adamw8bit"),
        replace(HEADLINE, name="24x512-ckpt-diffusers", frames=24, checkpointing="diffusers"),
        replace(HEADLINE, name="24x512-ckpt-off", frames=24, checkpointing="off"),
        replace(HEADLINE, name="bf16-sma-off", precision="bf16", sma="off"),
        replace(HEADLINE, name="attention-slice-8", attention_slice=8),
    ]
    rows += [replace(row, family=family) for family in families[1:] for row in (HEADLINE, PORTS)]
    seen: set[tuple] = set()
    unique = []
    for row in rows:
        key = astuple_settings(row)
        if key not in seen:
            seen.add(key)
            unique.append(row)
    return [row for row in unique if row.family in families]


def astuple_settings(row: Setting) -> tuple:
    """The settings of a row without its name (two names for one configuration run once)."""
    return tuple(v for k, v in asdict(row).items() if k != "name")


def train_config(row: Setting, steps: int) -> TrainConfig:
    """The trainer's config for ``row`` ("diffusers" checkpointing is switched on the model by the caller)."""
    return TrainConfig.from_flat(steps=steps, rank=row.rank, spatial_path=row.spatial, spatial_skip_prob=0.0,
                                 sma_mode=row.sma, precision=row.precision, optimizer=row.optimizer,
                                 gradient_checkpointing=row.checkpointing == "pack", attention_slice=row.attention_slice)


def make_clip(model: torch.nn.Module, frames: int, latent: int) -> TrainingClip:
    generator = torch.Generator().manual_seed(0)
    return TrainingClip(torch.randn(frames, 4, latent, latent, generator=generator),
                        torch.randn(1, 77, int(model.config.cross_attention_dim), generator=generator))


def clean_model(model: torch.nn.Module) -> None:
    """Remove the adapters a run left (and diffusers' checkpointing), so the next run starts fresh."""
    for name in list(adapter_names(model)):
        remove_lora(model, name)
    memory.disable_full_gradient_checkpointing(model)
