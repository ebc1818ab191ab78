"""Weight-free point tracking and the trajectory score it gives any two clips (synthetic clips, known motion)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sma.errors import SMAInputError
from sma.metrics import motion_fidelity, trajectory_fidelity
from sma.tracking import TrackerConfig, track_points

FRAMES, SIZE = 10, 96


def texture(seed: int, size: int) -> torch.Tensor:
    """A smooth random colour image ``[1, 3, size, size]`` (bicubic upsampled noise)."""
    noise = torch.rand(1, 3, size // 6, size // 6, generator=torch.Generator().manual_seed(seed))
    return F.interpolate(noise, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)


def moving_texture(seed: int, velocity=(0.0, 0.0), spin: float = 0.0, frames: int = FRAMES) -> torch.Tensor:
    """``[F, 3, SIZE, SIZE]``: a texture whose content moves by ``velocity`` px and turns by ``spin`` rad
    (clockwise on screen, about the frame centre) per frame."""
    tex = texture(seed, 2 * SIZE)  # twice the frame: the view never leaves it
    out = []
    for f in range(frames):
        c, s = math.cos(f * spin), math.sin(f * spin)
        # view point p shows texture point R^-1 (p - centre - f v) + centre (normalised: SIZE px = 1 unit here)
        shift = [-f * velocity[0] * 2 / (2 * SIZE), -f * velocity[1] * 2 / (2 * SIZE)]
        rot = torch.tensor([[c, s], [-s, c]])
        theta = torch.cat([0.5 * rot, (0.5 * rot @ torch.tensor(shift) * 2)[:, None]], dim=1)[None]
        grid = F.affine_grid(theta.float(), (1, 3, SIZE, SIZE), align_corners=False)
        out.append(F.grid_sample(tex, grid, mode="bilinear", align_corners=False)[0])
    return torch.stack(out)


def expected_positions(start: torch.Tensor, velocity=(0.0, 0.0), spin: float = 0.0) -> torch.Tensor:
    """Where points ``start [P, 2]`` of frame 0 are in every frame: ``[P, F, 2]``."""
    centre = torch.tensor([(SIZE - 1) / 2, (SIZE - 1) / 2])
    out = []
    for f in range(FRAMES):
        c, s = math.cos(f * spin), math.sin(f * spin)
        rot = torch.tensor([[c, -s], [s, c]])
        out.append((start - centre) @ rot.T + centre + f * torch.tensor(velocity))
    return torch.stack(out, dim=1)


@pytest.mark.parametrize("velocity, spin, bound", [((1.3, -0.6), 0.0, 0.05), ((4.0, -2.5), 0.0, 0.05),
                                                   ((0.0, 0.0), 0.01, 0.2), ((2.5, 1.5), 0.01, 0.2)])
def test_tracker_follows_known_motion_to_a_fraction_of_a_pixel(velocity, spin, bound):
    tracks = track_points(moving_texture(0, velocity, spin))
    assert tracks.shape[0] >= 30 and tracks.shape[1:] == (FRAMES, 2)  # points that leave the frame are dropped
    error = (tracks - expected_positions(tracks[:, 0], velocity, spin)).norm(dim=-1)[:, 1:]
    print(f"\ntracker on velocity {velocity} px/frame, spin {spin} rad/frame: {tracks.shape[0]} points, "
          f"error mean {error.mean():.3f} px, 95th percentile {error.quantile(0.95):.3f} px, max {error.max():.3f} px "
          f"over {FRAMES - 1} frames")
    assert error.mean() < bound and error.quantile(0.95) < 3 * bound


def score(a: torch.Tensor, b: torch.Tensor) -> float:
    return motion_fidelity(a, b, layout="channels_first").trajectory_score


def test_trajectory_score_of_any_two_clips():
    motion = dict(velocity=(1.5, 0.5))
    reference = moving_texture(1, **motion)
    same_motion = score(reference, moving_texture(2, **motion))  # another appearance
    turning = score(moving_texture(1, spin=0.02), moving_texture(2, spin=0.02))
    reverse = score(reference, reference.flip(0))
    still = score(reference, moving_texture(1, frames=1).expand(FRAMES, -1, -1, -1))
    across = score(reference, moving_texture(2, velocity=(-0.5, 1.5)))  # perpendicular pan
    print(f"\ntrajectory score: same motion, other appearance {same_motion:.3f} (pan), {turning:.3f} (rotation); "
          f"reversed {reverse:.3f}; still {still:.3f}; perpendicular {across:.3f}")
    assert same_motion > 0.95 and turning > 0.9
    assert reverse < -0.9 and abs(still) < 0.05 and abs(across) < 0.4


def test_global_brightness_and_contrast_do_not_change_the_score():
    reference = moving_texture(1, (1.0, 0.7), 0.01)
    generated = moving_texture(3, (1.0, 0.7), 0.01)
    base = score(reference, generated)
    for dim in (generated * 0.5 + 0.1, generated * 0.6 + 0.4):
        assert score(reference, dim) == pytest.approx(base, abs=2e-3)
    assert (track_points(generated * 0.5 + 0.1) - track_points(generated)).abs().max() < 0.05


def test_flat_clip_has_nothing_to_track_and_the_result_says_so():
    flat = torch.full((FRAMES, 3, SIZE, SIZE), 0.4)
    assert track_points(flat).shape == (0, FRAMES, 2)
    result = motion_fidelity(moving_texture(1, (1.0, 0.0)), flat, layout="channels_first")
    assert result.trajectory_score is None and result.tracked_points[1] == 0
    assert "no point of the generated clip could be tracked" in result.note
    moving = motion_fidelity(moving_texture(1, (1.0, 0.0)), moving_texture(2, (1.0, 0.0)), layout="channels_first")
    assert moving.tracked_points[0] > 50 and "points tracked" in moving.summary()
    assert motion_fidelity(flat, flat, layout="channels_first", track=False).tracked_points is None
    with pytest.raises(SMAInputError, match="tracker settings"):
        TrackerConfig(window=4)
    with pytest.raises(SMAInputError, match="F >= 2"):
        track_points(flat[:1])


def test_tracks_agree_with_the_synthetic_ground_truth_score():
    from synthetic_clips import moving_shapes_clip

    clip = moving_shapes_clip(FRAMES, SIZE, SIZE, seed=4, motion="pan")
    tracked = track_points(clip.frames.permute(0, 3, 1, 2))
    assert trajectory_fidelity(clip.trajectories, tracked) > 0.97
