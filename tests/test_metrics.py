"""Motion fidelity: cosine, SMA distances and the trajectory score against hand-written numpy references."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sma.errors import SMAInputError
from sma.loss import SMAConfig, SMALoss
from sma.metrics import (
    MotionFidelity,
    as_video,
    frame_pair_cosine,
    match_videos,
    motion_cosine,
    motion_fidelity,
    motion_metrics,
    spectral_distances,
    track_correlation,
    trajectory_fidelity,
)
from synthetic_clips import moving_shapes_clip, translating_square

FRAMES = 16


def latent_like(velocity: tuple[float, float], side: int = 12) -> torch.Tensor:
    """A translating square as an 8x8 'latent' clip ``[F, 3, 8, 8]``: 8x8 average pooling of 64 px frames,
    so a motion of a fraction of a pixel per frame moves each edge a sixteenth of a latent pixel or so
    (the regime SD latents live in: the motion vector pattern barely changes over the clip)."""
    frames = translating_square(frames=FRAMES, size=64, velocity=velocity, side=side).frames
    return F.avg_pool2d(frames.permute(0, 3, 1, 2), 8)


def numpy_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Reference: mean over frame pairs of the cosine between flattened motion vectors (all moving)."""
    da, db = np.diff(a, axis=0).reshape(a.shape[0] - 1, -1), np.diff(b, axis=0).reshape(b.shape[0] - 1, -1)
    cos = (da * db).sum(1) / (np.linalg.norm(da, axis=1) * np.linalg.norm(db, axis=1))
    return float(cos.mean())


# --- cosine -----------------------------------------------------------------------------------------


def test_identical_clips_give_cosine_one_and_zero_distances():
    clip = moving_shapes_clip(FRAMES, 48, 48, seed=3).frames
    result = motion_fidelity(clip, clip.clone())
    assert result.cosine == pytest.approx(1.0, abs=1e-12)
    assert result.global_distance == 0.0 and result.local_distance == 0.0
    assert result.frames == FRAMES and result.note == ""


def test_cosine_matches_numpy_reference_on_unrelated_clips():
    a = moving_shapes_clip(FRAMES, 48, 48, seed=1).frames
    b = moving_shapes_clip(FRAMES, 48, 48, seed=2, motion="rotate").frames
    expected = numpy_cosine(a.permute(0, 3, 1, 2).double().numpy(), b.permute(0, 3, 1, 2).double().numpy())
    assert motion_fidelity(a, b).cosine == pytest.approx(expected, abs=1e-6)
    per_pair = frame_pair_cosine(a.permute(0, 3, 1, 2)[None], b.permute(0, 3, 1, 2)[None])
    assert per_pair.shape == (1, FRAMES - 1)


def test_reversed_motion_gives_cosine_minus_one_on_latent_like_square():
    forward = latent_like((0.25, 0.0))
    result = motion_fidelity(forward, forward.flip(0))  # the same clip played backwards
    assert result.cosine < -0.99
    assert motion_fidelity(forward, latent_like((-0.25, 0.0))).cosine < -0.99  # opposite velocity


def test_direction_change_gives_the_cosine_of_the_angle():
    right = latent_like((0.25, 0.0))
    diagonal = latent_like((0.25 / math.sqrt(2), 0.25 / math.sqrt(2)))  # same speed, 45 degrees
    assert motion_cosine(right[None], diagonal[None]) == pytest.approx(math.cos(math.pi / 4), abs=0.03)


def test_different_speeds_are_in_between():
    base = latent_like((0.25, 0.0))
    reverse = motion_fidelity(base, base.flip(0))
    half = motion_fidelity(base, latent_like((0.125, 0.0)))
    quarter = motion_fidelity(base, latent_like((0.0625, 0.0)))
    # direction is unchanged, so the cosine stays near 1; the spectral distances see the speed
    assert half.cosine > 0.99 and quarter.cosine > 0.99
    assert 0 < half.global_distance < quarter.global_distance < reverse.global_distance
    assert 0 < half.local_distance < quarter.local_distance < reverse.local_distance
    # in pixel space a speed change moves the edges to other pixels: the cosine drops, above 'reversed'
    pixels = translating_square(FRAMES, 64, (1.0, 0.0), side=12).frames
    slower = translating_square(FRAMES, 64, (0.5, 0.0), side=12).frames
    mixed = motion_fidelity(pixels, slower).cosine
    assert motion_fidelity(pixels, pixels.flip(0)).cosine < mixed < 0.95


def test_zero_motion_rule():
    still = torch.full((5, 3, 8, 8), 0.5)
    moving = torch.rand(5, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert motion_fidelity(still, still).cosine == 1.0  # both still: they agree
    assert motion_fidelity(still, moving).cosine == 0.0  # one still: nothing in common
    # per pair: a clip that stops half way agrees with a still clip only on the still pairs
    stops = moving.clone()
    stops[2:] = stops[2]
    pairs = frame_pair_cosine(stops[None], still[None])
    assert pairs[0].tolist() == [0.0, 0.0, 1.0, 1.0]
    assert not torch.isnan(pairs).any()


def test_distances_are_the_sma_loss_terms():
    a = latent_like((0.25, 0.0))[None]
    b = latent_like((0.0, 0.25))[None]
    config = SMAConfig(lambda_global=0.0)  # the metric computes both terms whatever the lambdas
    distances = spectral_distances(a, b, config)
    loss = SMALoss(SMAConfig())(a, b)
    assert distances.global_ == pytest.approx(loss.global_.item(), rel=1e-6)
    assert distances.local == pytest.approx(loss.local.item(), rel=1e-6)
    assert distances.local == pytest.approx(distances.local_amplitude + distances.local_phase, rel=1e-6)
    assert len(distances.bands) == 4  # 15 motion vectors: 3 Haar levels + approximation
    logged = motion_metrics(a, b)
    assert logged == {"motion_cosine": motion_cosine(a, b), "global_distance": distances.global_,
                      "local_distance": distances.local}
    paper = spectral_distances(a, b, SMAConfig(sma_mode="paper"))
    assert paper.global_ == pytest.approx(SMALoss(SMAConfig(sma_mode="paper"))(a, b).global_.item(), rel=1e-6)


# --- inputs -----------------------------------------------------------------------------------------


def test_image_and_latent_layouts():
    clip = moving_shapes_clip(6, 32, 32, seed=0).frames  # [F, H, W, 3]
    first = as_video(clip)
    assert first.shape == (6, 3, 32, 32)
    assert torch.equal(as_video(clip.permute(0, 3, 1, 2)), first)
    latents = torch.randn(6, 4, 8, 8)
    assert as_video(latents).shape == (6, 4, 8, 8)
    assert torch.equal(as_video((clip * 255).round().to(torch.uint8)), (first * 255).round() / 255)
    with pytest.raises(SMAInputError, match="cannot tell the channel axis"):
        as_video(torch.zeros(6, 3, 8, 3))
    assert as_video(torch.zeros(6, 3, 8, 3), layout="channels_last").shape == (6, 3, 3, 8)


def test_other_size_is_resized_to_the_reference():
    big = moving_shapes_clip(8, 64, 64, seed=0).frames
    small = F.interpolate(big.permute(0, 3, 1, 2), size=(32, 32), mode="area").permute(0, 2, 3, 1)
    result = motion_fidelity(big, small)
    assert "resized from 32x32 to 64x64" in result.note
    assert result.cosine > 0.8
    a, b, note = match_videos(as_video(big), as_video(big))
    assert note == "" and torch.equal(a, b)


@pytest.mark.parametrize(("a", "b", "message"), [
    (torch.zeros(1, 4, 8, 8), torch.zeros(1, 4, 8, 8), "1 frame"),
    (torch.zeros(2, 4, 8, 8), torch.zeros(2, 4, 8, 8), "at least 3 frames"),
    (torch.zeros(8, 4, 8, 8), torch.zeros(6, 4, 8, 8), "8 frames but generated has 6"),
    (torch.zeros(8, 4, 8, 8), torch.zeros(8, 8, 8, 3), "4 channels but generated has 3"),
    (torch.zeros(8, 8, 8), torch.zeros(8, 8, 8), r"\[F, C, H, W\]"),
    (torch.full((4, 4, 8, 8), math.nan), torch.zeros(4, 4, 8, 8), "NaN"),
])
def test_bad_inputs_are_refused_with_a_message(a, b, message):
    with pytest.raises(SMAInputError, match=message):
        motion_fidelity(a, b)


# --- trajectories -----------------------------------------------------------------------------------


def numpy_trajectory_score(tracks_in: np.ndarray, tracks_out: np.ndarray, still: float = 1e-3) -> float:
    """The formula written out with loops: corr(q, p) = mean_k cos(v_out[q, k], v_in[p, k]) (both still: 1,
    one still: 0); score = (mean_q max_p corr + mean_p max_q corr) / 2."""
    def cos(u, v):
        nu, nv = np.hypot(*u), np.hypot(*v)
        if nu <= still and nv <= still:
            return 1.0
        if nu <= still or nv <= still:
            return 0.0
        return float(np.dot(u, v) / (nu * nv))

    v_in, v_out = np.diff(tracks_in, axis=1), np.diff(tracks_out, axis=1)
    corr = np.array([[np.mean([cos(v_out[q, k], v_in[p, k]) for k in range(v_in.shape[1])])
                      for p in range(len(v_in))] for q in range(len(v_out))])
    return float((corr.max(axis=1).mean() + corr.max(axis=0).mean()) / 2)


def test_trajectory_score_identical_perturbed_reversed():
    # seed 5: three shapes heading left at different angles (no shape moves against another, so the
    # best match of a reversed track is itself reversed)
    tracks = moving_shapes_clip(FRAMES, 64, 64, seed=5, shapes=3).trajectories.double().numpy()
    assert trajectory_fidelity(tracks, tracks) == pytest.approx(1.0, abs=1e-12)
    noise = np.random.default_rng(0).normal(scale=0.5, size=tracks.shape)
    perturbed = trajectory_fidelity(tracks, tracks + noise)
    reversed_ = trajectory_fidelity(tracks, tracks[:, ::-1])
    assert reversed_ < perturbed < 1.0
    assert reversed_ < -0.8
    for other in (tracks + noise, tracks[:, ::-1], tracks[:2] * 1.5 + 3.0):
        assert trajectory_fidelity(tracks, other) == pytest.approx(numpy_trajectory_score(tracks, other), abs=1e-12)


def test_trajectory_score_is_symmetric_and_counts_missing_motions():
    tracks = moving_shapes_clip(FRAMES, 64, 64, seed=6, shapes=3).trajectories.numpy()
    one = tracks[:1]
    # the output has only one of the three motions: every output track has a perfect match,
    # but two input tracks do not
    assert trajectory_fidelity(tracks, one, symmetric=False) == pytest.approx(1.0)
    assert trajectory_fidelity(tracks, one) < 1.0
    assert trajectory_fidelity(tracks, one) == pytest.approx(trajectory_fidelity(one, tracks))


def test_trajectory_zero_motion():
    still = np.zeros((2, 6, 2)) + [[[10.0, 20.0]], [[30.0, 5.0]]]
    moving = still + np.arange(6)[None, :, None] * np.array([1.0, 0.0])
    assert trajectory_fidelity(still, still) == 1.0
    assert trajectory_fidelity(still, moving) == 0.0
    corr = track_correlation(still, moving)
    assert corr.shape == (2, 2) and not torch.isnan(corr).any()


def test_tracks_in_motion_fidelity_and_errors():
    clip = moving_shapes_clip(8, 48, 48, seed=6)
    result = motion_fidelity(clip.frames, clip.frames, tracks_a=clip.trajectories, tracks_b=clip.trajectories)
    assert result.trajectory_score == pytest.approx(1.0)
    with pytest.raises(SMAInputError, match="for both clips"):
        motion_fidelity(clip.frames, clip.frames, tracks_a=clip.trajectories)
    with pytest.raises(SMAInputError, match="cover 8 frames but tracks_out cover 7"):
        trajectory_fidelity(clip.trajectories, clip.trajectories[:, :7])
    with pytest.raises(SMAInputError, match=r"\[P, F, 2\]"):
        trajectory_fidelity(np.zeros((3, 8)), np.zeros((3, 8)))
    with pytest.raises(SMAInputError, match="the clips have 8"):
        motion_fidelity(clip.frames, clip.frames, tracks_a=clip.trajectories[:, :7], tracks_b=clip.trajectories[:, :7])


def test_summary_text():
    text = MotionFidelity(cosine=0.9312, global_distance=0.0123, local_distance=0.5, trajectory_score=0.87,
                          frames=16, note="generated resized").summary()
    assert "motion cosine 0.931 (1 = same motion" in text
    assert "wavelet (global) distance 0.0123" in text and "Fourier (local) distance 0.5" in text
    assert "trajectory score 0.870" in text and "16 frames (15 frame pairs)" in text
    assert "note: generated resized" in text
    assert "trajectory" not in MotionFidelity(1.0, 0.0, 0.0, frames=4).summary()
