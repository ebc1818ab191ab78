"""Synthetic clips: determinism, layout, and that the ground-truth trajectories are where the frames
show the shapes (centroids measured from the pixels with numpy)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sma.errors import SMAInputError
from synthetic_clips import MOTIONS, PALETTE, moving_shapes_clip, translating_square


def coverage(frames: torch.Tensor, shape_index: int) -> np.ndarray:
    """Coverage ``[F, H, W]`` of shape ``shape_index`` measured from ``frames [F, H, W, 3]``.

    The background is grey, so a pixel's chroma (max - min over RGB) is coverage x the colour's
    chroma; the dominant channel says which shape it is.
    """
    f = frames.double().numpy()
    colour = np.array(PALETTE[shape_index])
    chroma = f.max(-1) - f.min(-1)
    dominant = (f - f.min(-1, keepdims=True)).argmax(-1)
    return np.where(dominant == np.argmax(colour), chroma / (colour.max() - colour.min()), 0.0)


def centroids(frames: torch.Tensor, shape_index: int) -> np.ndarray:
    """``[F, 2]`` coverage-weighted (x, y) centroid of one shape per frame."""
    alpha = coverage(frames, shape_index)
    ys, xs = np.mgrid[0:frames.shape[1], 0:frames.shape[2]]
    mass = alpha.sum(axis=(1, 2))
    return np.stack([(alpha * xs).sum(axis=(1, 2)) / mass, (alpha * ys).sum(axis=(1, 2)) / mass], axis=-1)


@pytest.mark.parametrize("motion", MOTIONS)
def test_same_seed_same_clip_other_seed_other_clip(motion):
    a = moving_shapes_clip(frames=6, height=32, width=40, seed=3, motion=motion)
    b = moving_shapes_clip(frames=6, height=32, width=40, seed=3, motion=motion)
    c = moving_shapes_clip(frames=6, height=32, width=40, seed=4, motion=motion)
    assert torch.equal(a.frames, b.frames) and torch.equal(a.trajectories, b.trajectories)
    assert not torch.allclose(a.trajectories, c.trajectories)
    assert float((a.frames - c.frames).abs().mean()) > 0.01


@pytest.mark.parametrize("motion", MOTIONS)
@pytest.mark.parametrize("height, width, shapes", [(64, 64, 3), (32, 48, 2)])
def test_layout_range_and_centroids(motion, height, width, shapes):
    clip = moving_shapes_clip(frames=12, height=height, width=width, seed=1, motion=motion, shapes=shapes)
    assert clip.frames.shape == (12, height, width, 3) and clip.frames.dtype == torch.float32
    assert clip.trajectories.shape == (shapes, 12, 2)
    assert 0.0 <= float(clip.frames.min()) and float(clip.frames.max()) <= 1.0
    border = torch.cat([clip.frames[:, [0, -1]].flatten(1, 2), clip.frames[:, :, [0, -1]].flatten(1, 2)], dim=1)
    assert float((border.amax(-1) - border.amin(-1)).max()) < 1e-6  # shapes stay inside the frame
    for p in range(shapes):
        error = np.hypot(*(centroids(clip.frames, p) - clip.trajectories[p].numpy()).T)
        assert error.max() < 0.1, (p, error.max())


def test_translate_moves_each_shape_at_its_own_constant_velocity():
    trajectories = moving_shapes_clip(frames=10, seed=2, motion="translate", shapes=3).trajectories.double()
    steps = trajectories.diff(dim=1)
    assert torch.allclose(steps.diff(dim=1), torch.zeros(3, 8, 2, dtype=torch.float64), atol=1e-4)
    speeds = steps[:, 0].norm(dim=-1)
    assert float(speeds.min()) > 0.5 and len({round(float(s), 3) for s in speeds}) == 3


def bare_pixels(*frames: torch.Tensor) -> torch.Tensor:
    """``[H, W]`` mask of pixels that no shape touches in any of ``frames [H, W, 3]``."""
    return torch.stack([(f.amax(-1) - f.amin(-1)) == 0 for f in frames]).all(dim=0)


def sample(frame: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of ``frame [H, W, 3]`` at pixel coordinates ``x, y [H, W]``."""
    height, width = frame.shape[:2]
    grid = torch.stack([2 * x / (width - 1) - 1, 2 * y / (height - 1) - 1], dim=-1)[None].float()
    return torch.nn.functional.grid_sample(frame.permute(2, 0, 1)[None], grid, align_corners=True)[0].permute(1, 2, 0)


@pytest.mark.parametrize("motion", MOTIONS)
def test_background_follows_the_camera(motion):
    # The last frame's background is the first frame's seen through the camera motion the shapes
    # show: shifted by their common step (pan), scaled about the centre by their distance ratio (zoom),
    # unchanged for object motion (translate, rotate).
    clip = moving_shapes_clip(frames=8, height=64, width=64, seed=5, motion=motion)
    first, last = clip.frames[0], clip.frames[-1]
    ys, xs = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    track = clip.trajectories[0].double()
    if motion == "pan":
        dx, dy = (track[-1] - track[0]).tolist()
        x, y = xs - dx, ys - dy
    elif motion == "zoom":
        zoom = float((track[-1] - 31.5).norm() / (track[0] - 31.5).norm())
        x, y = 31.5 + (xs - 31.5) / zoom, 31.5 + (ys - 31.5) / zoom
    else:
        x, y = xs, ys
    seen = sample(first, x, y)
    inside = (x >= 0) & (x <= 63) & (y >= 0) & (y <= 63)
    bare = bare_pixels(first, last) & inside & bare_pixels(seen)
    assert int(bare.sum()) > 1000
    assert float((seen - last).abs()[bare].max()) < 0.01
    moved = float((first - last).abs()[bare_pixels(first, last)].max())
    assert (moved > 0.05) if motion in ("pan", "zoom") else (moved == 0.0)


def test_pan_moves_every_shape_by_the_same_step():
    trajectories = moving_shapes_clip(frames=8, seed=6, motion="pan", shapes=3).trajectories.double()
    steps = trajectories.diff(dim=1)
    assert torch.allclose(steps, steps[:1].expand_as(steps), atol=1e-4)
    assert torch.allclose(steps, steps[:, :1].expand_as(steps), atol=1e-4)


def test_rotate_orbits_the_centre_at_one_angular_speed():
    clip = moving_shapes_clip(frames=8, height=64, width=64, seed=7, motion="rotate", shapes=3)
    offsets = clip.trajectories.double() - 31.5
    radius = offsets.norm(dim=-1)
    assert torch.allclose(radius, radius[:, :1].expand_as(radius), atol=1e-4)
    angle = torch.atan2(offsets[..., 1], offsets[..., 0])
    turn = torch.remainder(angle.diff(dim=1) + torch.pi, 2 * torch.pi) - torch.pi
    assert float(turn.abs().min()) > 0.05
    assert torch.allclose(turn, turn[:1, :1].expand_as(turn), atol=1e-4)


def test_zoom_pushes_shapes_outward_and_grows_them():
    clip = moving_shapes_clip(frames=8, height=64, width=64, seed=8, motion="zoom", shapes=2)
    distance = (clip.trajectories.double() - 31.5).norm(dim=-1)
    ratio = distance / distance[:, :1]
    assert torch.allclose(ratio[0], ratio[1], atol=1e-4) and float(ratio[0, -1]) > 1.2
    for p in range(2):
        area = coverage(clip.frames, p).sum(axis=(1, 2))
        # area grows with the square of the zoom factor
        np.testing.assert_allclose(area[-1] / area[0], float(ratio[p, -1]) ** 2, rtol=0.03)


@pytest.mark.parametrize("velocity", [(1.0, 0.0), (0.75, -0.5), (-1.25, 0.3)])
def test_translating_square_moves_at_the_asked_velocity(velocity):
    clip = translating_square(frames=16, size=64, velocity=velocity)
    assert clip.frames.shape == (16, 64, 64, 3) and clip.trajectories.shape == (1, 16, 2)
    steps = clip.trajectories[0].diff(dim=0)
    assert torch.allclose(steps, torch.tensor(velocity).expand_as(steps), atol=1e-5)
    assert torch.allclose(clip.trajectories[0].mean(dim=0), torch.tensor([31.5, 31.5]), atol=1e-4)
    measured = centroids(clip.frames, 0)
    np.testing.assert_allclose(np.diff(measured, axis=0), np.broadcast_to(velocity, (15, 2)), atol=0.03)
    np.testing.assert_allclose(coverage(clip.frames, 0).sum(axis=(1, 2)), 16 * 16, rtol=0.01)  # side 64 // 4


@pytest.mark.parametrize("call, fragment", [
    (lambda: moving_shapes_clip(motion="spin"), "unknown motion 'spin'"),
    (lambda: moving_shapes_clip(frames=1), "at least 2 frames"),
    (lambda: moving_shapes_clip(height=8), "at least 16x16 px"),
    (lambda: moving_shapes_clip(shapes=4), "shapes must be 1 to 3"),
    (lambda: translating_square(frames=16, size=32, velocity=(3.0, 0.0)), "leaves the 32x32 frame"),
])
def test_bad_requests_are_explained(call, fragment):
    with pytest.raises(SMAInputError) as error:
        call()
    assert fragment in str(error.value)
