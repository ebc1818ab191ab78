"""The toy world: every motion family moves exactly as its ground truth says, the pixels agree with it,
appearance is independent of motion, and the tracker measures motion from the frames alone."""

from __future__ import annotations

import math

import pytest
import torch

from sma.errors import SMAInputError
from sma.toyworld.codec import TOKENS, decode, embed_appearance, encode
from sma.toyworld.tracker import Motion, motion_error, track
from sma.toyworld.world import (
    FAMILIES,
    Nuisance,
    coverage,
    flow,
    random_appearance,
    random_poses,
    random_scenes,
    render,
    with_appearance,
)


@pytest.fixture(scope="module")
def scenes():
    """Eight clips of every family (16 x 16 px, 8 frames)."""
    return {family: random_scenes(family, 8, seed=3) for family in FAMILIES}


def measured_centroids(scene):
    alpha = coverage(scene)  # [B, P, F, H, W]
    ys, xs = torch.meshgrid(torch.arange(scene.height, dtype=torch.float32),
                            torch.arange(scene.width, dtype=torch.float32), indexing="ij")
    mass = alpha.sum(dim=(-2, -1)).clamp(min=1e-6)
    return torch.stack([(alpha * xs).sum(dim=(-2, -1)) / mass, (alpha * ys).sum(dim=(-2, -1)) / mass], -1), mass


def test_deterministic_per_seed():
    a, b, c = (render(random_scenes(FAMILIES, 6, seed=s), Nuisance(), torch.Generator().manual_seed(0))
               for s in (1, 1, 2))
    assert torch.equal(a, b)
    assert (a - c).abs().mean() > 0.01


@pytest.mark.parametrize("family", FAMILIES)
def test_pixels_follow_the_ground_truth(scenes, family):
    scene = scenes[family]
    centroids, mass = measured_centroids(scene)
    present = scene.appearance.present.bool()
    error = (centroids - scene.poses.centres()).norm(dim=-1)[present]
    assert float(error.max()) < 0.2  # sub-pixel: anti-aliased edges
    area = scene.appearance.area()[..., None] * scene.poses.scale ** 2
    ratio = (mass / area)[present]
    assert 0.9 < float(ratio.min()) and float(ratio.max()) < 1.15
    inside = (centroids[present] >= 1).all() and (centroids[present] <= scene.width - 2).all()
    assert inside


def test_families_move_as_documented(scenes):
    def pose(family):
        p = scenes[family].poses
        return p.centres()[:, 0], p.angle[:, 0], p.scale[:, 0]

    c, a, s = pose("translate")
    step = c[:, 1:] - c[:, :-1]
    assert torch.allclose(step, step[:, :1].expand_as(step), atol=1e-4)
    speed = step[:, 0].norm(dim=-1)
    assert (speed >= 0.5 - 1e-4).all() and (speed <= 1.2 + 1e-4).all()
    assert torch.equal(a, a[:, :1].expand_as(a)) and (s == 1).all()

    c, a, s = pose("rotate")
    spin = a[:, 1:] - a[:, :-1]
    assert torch.allclose(c, c[:, :1].expand_as(c)) and torch.allclose(spin, spin[:, :1].expand_as(spin), atol=1e-5)
    assert (spin.abs() >= 0.2 - 1e-5).all() and (spin.abs() <= 0.4 + 1e-5).all()

    c, a, s = pose("zoom")
    growth = torch.log(s[:, 1:] / s[:, :-1])
    assert torch.allclose(c, c[:, :1].expand_as(c))
    assert torch.allclose(growth, growth[:, :1].expand_as(growth), atol=1e-5) and (growth.abs() >= 0.07 - 1e-5).all()

    c, _, _ = pose("orbit")  # equal steps along a circle: constant speed, constant turning
    step = c[:, 1:] - c[:, :-1]
    length = step.norm(dim=-1)
    assert torch.allclose(length, length[:, :1].expand_as(length), atol=1e-4)
    turn = torch.atan2(step[:, 1:, 1], step[:, 1:, 0]) - torch.atan2(step[:, :-1, 1], step[:, :-1, 0])
    turn = (turn + math.pi) % (2 * math.pi) - math.pi
    assert torch.allclose(turn, turn[:, :1].expand_as(turn), atol=1e-3) and (turn.abs() > 0.1).all()

    c, _, _ = pose("turn")  # exactly one change of direction, by 90-150 degrees
    step = c[:, 1:] - c[:, :-1]
    heading = torch.atan2(step[..., 1], step[..., 0])
    change = ((heading[:, 1:] - heading[:, :-1] + math.pi) % (2 * math.pi) - math.pi).abs()
    assert ((change > 0.3).sum(dim=1) >= 1).all() and ((change > 0.3).sum(dim=1) <= 2).all()
    assert (change.amax(dim=1) > math.pi / 4).all()

    c, _, _ = pose("oscillate")  # moves along one line only
    offsets = c - c[:, :1]
    cross = offsets[:, 1:, 0] * offsets[:, 2:3, 1] - offsets[:, 1:, 1] * offsets[:, 2:3, 0]
    assert cross.abs().max() < 1e-3

    p = scenes["two_shapes"]
    assert (p.appearance.present == 1).all()
    alpha = coverage(p)
    assert float((alpha[:, 0] * alpha[:, 1]).max()) == 0.0  # never overlap
    v = p.poses.centres()[:, :, 1] - p.poses.centres()[:, :, 0]  # [B, 2, 2]
    cosine = (v[:, 0] * v[:, 1]).sum(-1) / (v[:, 0].norm(dim=-1) * v[:, 1].norm(dim=-1))
    assert (cosine <= 1e-4).all()  # directions at least 90 degrees apart


def test_appearance_is_independent_of_motion(scenes):
    scene = scenes["translate"]
    other = random_appearance(8, 1, generator=torch.Generator().manual_seed(99))
    redrawn = with_appearance(scene, other)
    assert torch.equal(redrawn.poses.cx, scene.poses.cx)
    before, after = measured_centroids(scene)[0], measured_centroids(redrawn)[0]
    assert (before[:, 0] - after[:, 0]).norm(dim=-1).max() < 0.2
    assert (render(redrawn) - render(scene)).abs().amax() > 0.3  # looks different
    # the same appearance gets every motion family
    app = random_appearance(4, 1, generator=torch.Generator().manual_seed(5))
    for family in FAMILIES[:-1]:
        poses = random_poses(family, app, generator=torch.Generator().manual_seed(6))
        assert poses.family == (family,) * 4


@pytest.mark.parametrize("family", FAMILIES)
def test_tracker_recovers_motion_from_noisy_frames(scenes, family):
    scene = scenes[family]
    frames = render(scene, Nuisance(), torch.Generator().manual_seed(1))
    app = scene.appearance
    errors, wrong = [], []
    for i in range(app.batch):
        for p in range(2):
            if not app.present[i, p]:
                continue
            t = track(frames[i], app.colours()[i, p], float(app.area()[i, p]), float(app.radius()[i, p]))
            assert t.found.all()
            radius = float(app.radius()[i, p])
            truth = Motion.of_poses(scene.poses.centres()[i, p], scene.poses.angle[i, p], scene.poses.scale[i, p])
            j = (i + 1) % app.batch
            other = Motion.of_poses(scene.poses.centres()[j, 0], scene.poses.angle[j, 0] + 0.3 * torch.arange(8),
                                    scene.poses.scale[j, 0])
            errors.append(motion_error(Motion.of_track(t), truth, radius).mean())
            wrong.append(motion_error(Motion.of_track(t), other, radius).mean())
    errors, wrong = torch.stack(errors), torch.stack(wrong)
    assert float(errors.mean()) < 0.5, errors
    assert float(wrong.mean()) > 2 * float(errors.mean())


def test_tracker_finds_nothing_without_the_colour():
    scene = random_scenes("translate", 2, seed=4)
    frames = render(scene, Nuisance(), torch.Generator().manual_seed(0))
    hue = scene.appearance.hue[0, 0]
    absent = torch.tensor([math.cos(hue + math.pi), 0.0, 0.0])  # not its colour
    absent = torch.stack([0.5 + 0.4 * torch.cos(hue + math.pi + k * 2 * math.pi / 3) for k in range(3)])
    t = track(frames[0], absent, float(scene.appearance.area()[0, 0]), float(scene.appearance.radius()[0, 0]))
    assert not t.found.any()
    noise = torch.rand(8, 16, 16, 3, generator=torch.Generator().manual_seed(0))  # colourful but no blob
    t = track(noise, scene.appearance.colours()[0, 0], float(scene.appearance.area()[0, 0]), 2.0)
    assert t.found.float().mean() < 0.2


def test_flow_moves_shape_pixels_with_the_shape():
    scene = random_scenes(("translate", "rotate", "zoom"), 6, seed=8)
    f = flow(scene)  # [B, F-1, H, W, 2]
    assert f.shape == (6, 7, 16, 16, 2)
    alpha = coverage(scene)[:, 0]  # [B, F, H, W]
    ys, xs = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    for b in range(6):
        for k in range(7):
            inside = alpha[b, k] > 0.5
            assert (f[b, k][~inside] == 0).all()  # the background is still
            core = alpha[b, k] == 1
            x = (xs + f[b, k, ..., 0])[core] / 7.5 - 1  # grid_sample coordinates, -1..1 = pixel centres 0..15
            y = (ys + f[b, k, ..., 1])[core] / 7.5 - 1
            grid = torch.stack([x, y], -1)[None, None]
            landed = torch.nn.functional.grid_sample(alpha[b, k + 1][None, None], grid, align_corners=True)
            assert landed.min() > 0.5 and landed.mean() > 0.85  # pixels inside the shape stay inside it
            if scene.poses.family[b] == "translate":
                shift = scene.poses.centres()[b, 0, k + 1] - scene.poses.centres()[b, 0, k]
                assert torch.allclose(f[b, k][inside], shift.expand(int(inside.sum()), 2), atol=1e-4)


def test_nuisance_is_motion_unrelated_and_optional():
    scene = random_scenes("translate", 3, seed=2)
    clean = render(scene)
    assert torch.equal(clean, render(scene, Nuisance.none()))
    noisy = render(scene, Nuisance(), torch.Generator().manual_seed(0))
    difference = (noisy - clean).abs()
    assert 0.005 < float(difference.mean()) < 0.05


def test_codec_round_trip_and_embedding():
    scene = random_scenes(FAMILIES, 8, seed=6)
    frames = render(scene, Nuisance(), torch.Generator().manual_seed(0))
    latents = encode(frames)
    assert latents.shape == (8, 8, 4, 16, 16)
    assert torch.allclose(decode(latents), frames, atol=1e-6)
    assert abs(float(latents.mean())) < 0.3 and 0.5 < float(latents.std()) < 1.2  # about zero mean, unit scale
    assert float(latents[:, :, 3].abs().max()) == 0.0
    tokens = embed_appearance(scene.appearance)
    assert tokens.shape == (8, TOKENS, 32)
    distances = torch.cdist(tokens.flatten(1), tokens.flatten(1))
    assert float(distances[~torch.eye(8, dtype=torch.bool)].min()) > 0.1  # every appearance has its own embedding


@pytest.mark.parametrize("call, needle", [
    (lambda: random_scenes("spiral", 2), "unknown motion family"),
    (lambda: random_poses("translate", random_appearance(1), frames=1), "at least 2 frames"),
    (lambda: random_poses("translate", random_appearance(1), height=8, width=8), "at least 12 x 12"),
    (lambda: random_appearance(2, shapes=3), "1 or 2 shapes"),
])
def test_bad_settings_say_what_is_allowed(call, needle):
    with pytest.raises(SMAInputError, match=needle):
        call()


def test_two_shapes_always_find_room():
    for seed in (0, 1):
        scene = random_scenes("two_shapes", 300, seed=seed)
        alpha = coverage(scene)
        assert float((alpha[:, 0] * alpha[:, 1]).max()) == 0.0
