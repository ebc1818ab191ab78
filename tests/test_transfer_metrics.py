"""The metrics that tell motion transfer from copying, and the recoloured copies that fight copying.

Reference values: the toy world's own renders (the ideal output is known exactly) and Python's ``colorsys``.
"""
from __future__ import annotations

import colorsys
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from sma.augment import ColourTransform, colour_variants, random_transforms
from sma.errors import SMAInputError
from sma.toyworld import transfer
from sma.toyworld.identity import copy_ratio
from sma.toyworld.recipe import recoloured
from sma.toyworld.world import FAMILIES, render, with_appearance

SINGLE_SHAPE = [f for f in FAMILIES if f != "two_shapes"]


@pytest.mark.parametrize("family", FAMILIES)
def test_the_reference_scored_as_a_new_subject_is_a_copy_and_the_ideal_output_is_a_transfer(family):
    task = transfer.make_task(family, 1)
    for subject in transfer.subject_tasks(task, 3)[:-1]:
        a, b = subject.reference.appearance, subject.target
        assert not torch.equal(a.kind, b.kind) and abs(float(a.grey - b.grey)) > 0.2  # shape, background
        shapes = int(a.present[0].sum())
        assert all(math.cos(float(a.hue[0, p] - b.hue[0, q])) < 0.77 for p in range(shapes) for q in range(shapes))  # 40 deg
        ideal = render(subject.target_scene())
        copy, own = transfer.score_samples(subject.frames[None], subject), transfer.score_samples(ideal, subject)
        assert (copy.found, copy.copied) == (0.0, 1.0) and copy.copy_ratio < 0.01 and copy.leak > 0.9
        assert own.found >= 0.6 and own.copied == 0.0 and own.copy_ratio > 100 and own.leak == 0.0


@pytest.mark.parametrize("family", SINGLE_SHAPE)
def test_a_recoloured_copy_of_the_reference_shape_is_not_the_new_subject(family):
    """B's colours on A's shape (kind, size, elongation): colour alone would call it B; the shape says no."""
    subject = transfer.subject_tasks(transfer.make_task(family, 2), 1)[0]
    a, b = subject.reference.appearance, subject.target
    recolour = render(with_appearance(subject.reference, replace(a, hue=b.hue, value=b.value)))
    scores = transfer.score_samples(recolour, subject)
    assert scores.found <= 0.125 and scores.leak == 0.0  # A's colour is gone, its shape is not


def test_the_control_is_the_reference_itself():
    task = transfer.make_task("orbit", 0)
    control = transfer.subject_tasks(task, 2)[-1]
    assert transfer.is_reference(control) and not transfer.is_reference(transfer.subject_tasks(task, 2)[0])
    scores = transfer.score_samples(task.frames[None], control)
    assert scores.found == 1.0 and math.isnan(scores.copied) and scores.error < 0.5


def test_copy_ratio_is_the_ratio_of_mean_squared_errors():
    rng = np.random.default_rng(0)
    sample, reference, ideal = (torch.from_numpy(rng.random((4, 6, 6, 3))) for _ in range(3))
    expected = float(np.mean((sample.numpy() - reference.numpy()) ** 2) / np.mean((sample.numpy() - ideal.numpy()) ** 2))
    assert copy_ratio(sample, reference, ideal) == pytest.approx(expected, rel=1e-12)


# --- recoloured copies -----------------------------------------------------------------------------------------

def _colorsys_hue_turn(rgb: np.ndarray, angle: float, saturation: float) -> np.ndarray:
    out = np.empty_like(rgb)
    for index in np.ndindex(rgb.shape[:-1]):
        y, i, q = colorsys.rgb_to_yiq(*rgb[index])
        c, s = math.cos(angle), math.sin(angle)
        i, q = saturation * (c * i - s * q), saturation * (s * i + c * q)
        out[index] = np.clip(colorsys.yiq_to_rgb(y, i, q), 0, 1)
    return out


def test_hue_and_saturation_match_colorsys_yiq():
    rng = np.random.default_rng(1)
    frames = rng.uniform(0.2, 0.8, (2, 4, 5, 3))
    got = ColourTransform(hue=1.1, saturation=0.7)(torch.from_numpy(frames)).numpy()
    np.testing.assert_allclose(got, _colorsys_hue_turn(frames, 1.1, 0.7), atol=1e-6)
    assert np.allclose(ColourTransform()(torch.from_numpy(frames)).numpy(), frames, atol=1e-6)  # identity


def test_one_transform_for_every_frame_keeps_the_motion():
    """Unclipped, a transform is affine and the same for all frames: frame differences are mapped by its linear
    part, so where nothing moves the difference stays 0, and a moving pixel's change moves with it."""
    task = transfer.make_task("translate", 0)
    frames = task.frames.double().clamp(0.25, 0.75)
    transform = ColourTransform(hue=2.0, saturation=0.8, contrast=0.9, brightness=0.02, grey=0.1)
    out = transform(frames)
    moved, moved_out = frames[1:] - frames[:-1], out[1:] - out[:-1]
    still = moved.abs().amax(-1) < 1e-12
    assert bool(still.any()) and float(moved_out.abs().amax(-1)[still].max()) < 1e-9
    changed = moved.abs().amax(-1) > 0.05
    assert bool((moved_out.abs().amax(-1)[changed] > 1e-3).all())


def test_random_transforms_are_seeded_and_in_range():
    first, again, other = random_transforms(4, 3), random_transforms(4, 3), random_transforms(4, 4)
    assert first == again and first != other and len({t.hue for t in first}) == 4
    assert all(-math.pi <= t.hue <= math.pi and 0.6 <= t.saturation <= 1.4 and 0 <= t.grey <= 0.3 for t in first)
    with pytest.raises(SMAInputError, match=r"RGB frames \[F, H, W, 3\]"):
        colour_variants(torch.zeros(4, 8, 8), 1, 0)


@pytest.mark.parametrize("matching_tokens", [False, True])
def test_recoloured_copies_are_motion_only_clips_of_the_same_motion(matching_tokens):
    task = transfer.make_task("orbit", 0)
    copies = recoloured(task, 3, 5, matching_tokens)
    assert len(copies) == 3 and all(c.motion_only for c in copies)
    assert all(c.latents.shape == task.latents.shape and not torch.equal(c.latents, task.latents) for c in copies)
    same_tokens = [torch.equal(c.text_embedding, task.tokens) for c in copies]
    assert same_tokens == [not matching_tokens] * 3
