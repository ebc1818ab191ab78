"""Validation samples: a short DDIM sample of the current model that draws from no training RNG."""
from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
from PIL import Image

from sma.errors import SMAInputError
from sma.lora import LoRAConfig, add_motion_lora, add_spatial_lora, lora_layers
from sma.models.build import make_noise_scheduler, tiny_motion_unet
from sma.training.samples import ValidationPrompt, sample_clip, save_webp

TEXT_DIM = 32  # cross-attention width of the tiny model
SHAPE = (8, 4, 8, 8)  # frames, channels, h, w


def prompt(guided: bool = True) -> ValidationPrompt:
    g = torch.Generator().manual_seed(9)
    text = torch.randn(1, 77, TEXT_DIM, generator=g)
    return ValidationPrompt(text, torch.randn(1, 77, TEXT_DIM, generator=g) if guided else None)


@pytest.fixture(scope="module")
def model():
    unet = tiny_motion_unet("v3", seed=0)
    add_motion_lora(unet, LoRAConfig(rank=4, seed=1))
    add_spatial_lora(unet, LoRAConfig(rank=4, seed=2))
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name in ("motion", "spatial"):
            for adapter in lora_layers(unet, name).values():
                adapter.up.copy_(torch.randn(adapter.up.shape, generator=generator) * 0.5)
    return unet.train()


def sample(unet, seed: int = 0, guided: bool = True, off=("spatial",), steps: int = 3) -> torch.Tensor:
    return sample_clip(unet, make_noise_scheduler(), prompt(guided), SHAPE, steps, 7.5, seed, contextlib.nullcontext,
                       off)


def test_sample_is_deterministic_and_leaves_rng_and_mode_alone(model):
    rng = torch.get_rng_state()
    first = sample(model)
    assert torch.equal(torch.get_rng_state(), rng)  # the global generator (dropout, training) is not drawn from
    assert model.training and all(a.enabled for a in lora_layers(model, "spatial").values())
    assert first.shape == SHAPE and first.dtype == torch.float32 and torch.isfinite(first).all()
    assert torch.equal(sample(model), first)
    assert (sample(model, seed=1) - first).abs().max() > 1e-3
    assert (sample(model, guided=False) - first).abs().max() > 1e-3  # guidance is applied


def test_sample_uses_the_motion_lora_and_not_the_spatial_one(model):
    base = sample(model)
    assert (sample(model, off=("spatial", "motion")) - base).abs().max() > 1e-3
    assert (sample(model, off=()) - base).abs().max() > 1e-3  # switching the spatial LoRA off matters


def test_webp_strip_and_prompt_checks(tmp_path):
    frames = torch.rand(5, 3, 16, 24, generator=torch.Generator().manual_seed(0))
    path = save_webp(frames, tmp_path / "strip.webp")
    with Image.open(path) as image:
        assert image.format == "WEBP" and image.n_frames == 5 and image.size == (24, 16)
        image.seek(4)
        last = torch.from_numpy(np.array(image.convert("RGB"))).float() / 255
    assert (last - frames[4].permute(1, 2, 0)).abs().max() < 1 / 255 + 1e-6  # lossless
    with pytest.raises(SMAInputError, match=r"\[1, T, 32\]"):
        ValidationPrompt(torch.zeros(1, 77, 16)).check(TEXT_DIM)
    with pytest.raises(SMAInputError, match="tokens"):
        ValidationPrompt(torch.zeros(1, 77, 32), torch.zeros(1, 70, 32)).check(TEXT_DIM)
