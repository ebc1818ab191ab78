"""Validation samples in the trainer: every N steps, costing no training state (resume stays bit-exact)."""
from __future__ import annotations

import pytest
import torch
from PIL import Image

from sma.errors import SMAInputError
from sma.models.build import make_noise_scheduler, tiny_motion_unet
from sma.training import TrainCallbacks, TrainConfig, Trainer, TrainingClip
from sma.training.samples import ValidationPrompt, validation_path

TEXT_DIM = 32  # cross-attention width of the tiny model
FRAMES = 8


def clips() -> list[TrainingClip]:
    z = torch.full((FRAMES, 4, 8, 8), -0.5)
    for f in range(FRAMES):
        z[f, :, 2:5, 1 + f % 4:4 + f % 4] = 1.0
    return [TrainingClip(z, torch.zeros(1, 77, TEXT_DIM), "square")]


def prompt() -> ValidationPrompt:
    g = torch.Generator().manual_seed(9)
    return ValidationPrompt(torch.randn(1, 77, TEXT_DIM, generator=g), torch.randn(1, 77, TEXT_DIM, generator=g))


def config(**changes) -> TrainConfig:
    return TrainConfig.from_flat(steps=4, seed=2, rank=4, **changes)


def run(cfg: TrainConfig, validation: ValidationPrompt | None = None, callbacks: TrainCallbacks | None = None,
        resume_from=None):
    trainer = Trainer(tiny_motion_unet("v3", seed=0), clips(), make_noise_scheduler(), cfg, validation=validation)
    return trainer, trainer.run(callbacks, resume_from=resume_from)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("checkpoints")
    samples: dict[str, list] = {"whole": [], "resumed": []}
    plain = run(config())[1]
    rng_before = torch.get_rng_state()
    whole = run(config(validation_every=2, validation_steps=3, checkpoint_every=2, checkpoint_dir=str(folder)),
                prompt(), TrainCallbacks(on_validation=lambda step, frames: samples["whole"].append((step, frames))))[1]
    rng_after = torch.get_rng_state()
    done: list[int] = []
    stop = TrainCallbacks(on_step=lambda r: done.append(r.step), should_stop=lambda: len(done) >= 3)
    resumed_folder = tmp_path_factory.mktemp("resumed")
    cfg = config(validation_every=2, validation_steps=3, checkpoint_every=2, checkpoint_dir=str(resumed_folder))
    run(cfg, prompt(), stop)
    resumed = run(cfg, prompt(), TrainCallbacks(on_validation=lambda s, f: samples["resumed"].append((s, f))),
                  resume_from=resumed_folder)[1]
    return dict(plain=plain, whole=whole, resumed=resumed, samples=samples, folder=folder,
                rng_same=torch.equal(rng_before, rng_after))


def test_validation_samples_cost_no_training_state(runs):
    plain, whole, resumed = runs["plain"], runs["whole"], runs["resumed"]
    for key in plain.lora_state:  # with or without samples, and across a resume: the same LoRA bit for bit
        assert torch.equal(plain.lora_state[key], whole.lora_state[key]), key
        assert torch.equal(plain.lora_state[key], resumed.lora_state[key]), key
    assert plain.losses == whole.losses == resumed.losses
    assert runs["rng_same"]  # the global RNG is not drawn from either


def test_validation_samples_are_real_deterministic_clips_of_the_current_lora(runs):
    whole = runs["samples"]["whole"]
    assert [s for s, _ in whole] == [2, 4]
    frames = whole[-1][1]
    assert frames.shape == (FRAMES, 3, 8, 8) and 0 <= frames.min() and frames.max() <= 1
    assert (whole[0][1] - whole[1][1]).abs().max() > 1e-4  # the LoRA changed between steps 2 and 4
    resumed = runs["samples"]["resumed"]
    assert [s for s, _ in resumed] == [4] and torch.equal(resumed[0][1], frames)  # fixed seed, same LoRA
    assert torch.equal(runs["whole"].last_validation, frames)
    for step in (2, 4):  # animated strips next to the checkpoints
        with Image.open(validation_path(runs["folder"], step)) as image:
            assert image.format == "WEBP" and image.n_frames == FRAMES and image.size == (64, 64)


def test_validation_settings_are_checked():
    with pytest.raises(SMAInputError, match="validation_steps"):
        TrainConfig.from_flat(validation_every=2, validation_steps=0)
    with pytest.raises(SMAInputError, match="validation prompt"):
        Trainer(tiny_motion_unet("v3", seed=0), clips(), make_noise_scheduler(), config(validation_every=2))
    with pytest.raises(SMAInputError, match=r"\[1, T, 32\]"):
        Trainer(tiny_motion_unet("v3", seed=0), clips(), make_noise_scheduler(), config(validation_every=2),
                validation=ValidationPrompt(torch.zeros(1, 77, 16)))
