"""Motion transfer in the toy world: learn motion M from a clip of appearance A, generate appearance B.

A :class:`TransferTask` holds the reference clip (motion M drawn with appearance A, with nuisance), its
latents and appearance embedding, and a different appearance B (other hues, other kind, other texture).
:mod:`.recipe` fits a motion LoRA to the reference with the pack's own ``Trainer`` on the pretrained toy
base; :func:`evaluate` samples B with the motion LoRA at given strengths (MotionDirector's
spatial LoRA off, as at inference) and measures, against the known M:

- ``error``: trajectory error (px/frame; :func:`.tracker.motion_error`: centroid displacement plus
  outline motion from spin and scale), over frame pairs where B's shapes are found;
- ``fidelity``: the pack's motion-fidelity score (:func:`sma.metrics.trajectory_fidelity`, 1 = same
  motion) on outline points (centre and the ends of both axes) of the tracked and the true poses;
- ``leak``: how much of A shows in B's samples. When B has other colours: the area of the largest blob of each
  of A's colours / A's area (0 = none). When B has A's colours (:func:`new_shape_and_background`): how far
  the background's brightness moved from B's towards A's (0 = B's, 1 = A's; NaN when the two are alike);
- ``found``: the share of frames where B is identified by its colour AND its shape (kind, size, elongation;
  :mod:`.identity`), so a recoloured copy of A does not count as B;
- ``copied`` / ``copy_ratio``: the share of samples closer to the reference clip than to the ideal output
  (B's appearance moving with M), and the median ratio of the two distances (:func:`.identity.copy_ratio`).

The primary test (:func:`subject_tasks`) uses several B's that each differ from A in colour, shape and
background, with A itself as the control.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor, nn

from ..lora import enable_lora, set_lora_scale
from ..metrics import trajectory_fidelity
from ..training import MOTION_ADAPTER, SPATIAL_ADAPTER
from .base import sample
from .codec import decode, embed_appearance, encode
from .identity import copy_ratio, identified, shape_match
from .tracker import Motion, colour_mask, main_blob, motion_error, track, wrap_half_turn
from .world import (
    GREY_RANGE,
    HUES_DEG,
    KINDS,
    Appearance,
    Nuisance,
    Scene,
    random_appearance,
    random_scenes,
    render,
    with_appearance,
)

FRAMES = 8
SIZE = 16


@dataclass
class TransferTask:
    """Reference clip (motion M, appearance A) and the appearance B to generate.

    ``reference``: the scene (batch of 1); ``frames`` ``[F, H, W, 3]`` as rendered (with nuisance);
    ``latents`` ``[F, 4, H, W]``; ``tokens`` / ``target_tokens``: embeddings ``[1, T, 32]`` of A / B.
    """

    family: str
    seed: int
    reference: Scene
    frames: Tensor
    latents: Tensor
    tokens: Tensor
    target: Appearance
    target_tokens: Tensor

    def target_scene(self) -> Scene:
        """Motion M drawn with appearance B (what a perfect transfer would produce)."""
        return with_appearance(self.reference, self.target)


def other_appearance(appearance: Appearance, seed: int) -> Appearance:
    """Appearance B for a one-clip appearance A: hues far from all of A's, another kind, the other texture."""
    g = torch.Generator().manual_seed(seed + 1)
    slots = torch.arange(len(HUES_DEG))
    taken = [int(torch.round(h * 180 / math.pi / 60)) % len(HUES_DEG)
             for h, present in zip(appearance.hue[0], appearance.present[0]) if present]
    chosen: list[int] = []
    for _ in range(int(appearance.present[0].sum())):
        distance = torch.stack([torch.minimum((slots - t) % 6, (t - slots) % 6) for t in taken + chosen]).amin(0)
        distance[torch.tensor(taken + chosen)] = -1
        chosen.append(int(distance.argmax()))
    hue = appearance.hue.clone()
    for p, slot in enumerate(chosen):
        hue[0, p] = HUES_DEG[slot] * math.pi / 180 + float(torch.rand((), generator=g) * 0.2 - 0.1)
    return replace(appearance, hue=hue, kind=(appearance.kind + 1) % len(KINDS), striped=1 - appearance.striped,
                   value=0.8 + 0.2 * torch.rand(appearance.value.shape, generator=g),
                   grey=1 - appearance.grey)


def make_task(family: str, seed: int, frames: int = FRAMES, size: int = SIZE,
              reference: Scene | None = None) -> TransferTask:
    """A transfer task for ``family`` (deterministic per seed), or for a given one-clip ``reference``."""
    scene = reference if reference is not None else random_scenes(family, 1, frames, size, seed=seed)
    clip = render(scene, Nuisance(), torch.Generator().manual_seed(seed))[0]
    target = other_appearance(scene.appearance, seed)
    return TransferTask(family=family, seed=seed, reference=scene, frames=clip, latents=encode(clip),
                        tokens=embed_appearance(scene.appearance, 32, scene.width),
                        target=target, target_tokens=embed_appearance(target, 32, scene.width))


def new_subject(appearance: Appearance, seed: int) -> Appearance:
    """Another subject than the one-shape-or-two ``appearance`` (A), for the transfer test: hues far from all of
    A's, another shape kind (one of the two others, by seed), a new size and elongation, the other texture, and
    a new background (grey level at the far end of the range, other waves)."""
    g = torch.Generator().manual_seed(10_007 + seed)
    other = other_appearance(appearance, seed)
    fresh = random_appearance(1, int(appearance.present[0].sum()), generator=g)
    low, high = GREY_RANGE
    grey = torch.where(appearance.grey > (low + high) / 2, low + 0.05 * torch.rand(1, generator=g),
                       high - 0.05 * torch.rand(1, generator=g))
    kind = (appearance.kind + 1 + seed % 2) % len(KINDS)
    return replace(other, kind=kind, size=fresh.size, aspect=fresh.aspect, grey=grey, waves=fresh.waves)


def subject_tasks(task: TransferTask, count: int) -> list[TransferTask]:
    """The primary transfer test: ``count`` tasks on the same reference, each with a new subject B that differs from
    A in colour, shape and background (:func:`new_subject`), then A itself as the control."""
    subjects = [new_subject(task.reference.appearance, task.seed * 100 + k) for k in range(count)]
    return [*(retarget(task, b) for b in subjects), retarget(task, task.reference.appearance)]


def is_reference(task: TransferTask) -> bool:
    """True when B is A: the control, where the ideal output is the reference clip."""
    a, b = task.reference.appearance, task.target
    return all(torch.equal(getattr(a, f.name), getattr(b, f.name)) for f in fields(a))


def retarget(task: TransferTask, target: Appearance) -> TransferTask:
    """The same reference clip with another appearance B to generate."""
    return replace(task, target=target, target_tokens=embed_appearance(target, 32, task.reference.width))


SHAPE_AND_BACKGROUND = ("kind", "size", "aspect", "waves")
"""The appearance fields :func:`new_shape_and_background` takes from B."""


def new_shape_and_background(task: TransferTask) -> TransferTask:
    """The task with B = A's colours (hue, brightness, texture) on B's shapes, sizes and background texture,
    its grey level at the far end of the toy world's range from A's (so a background leak shows)."""
    appearance = task.reference.appearance
    low, high = GREY_RANGE
    grey = torch.where(appearance.grey > (low + high) / 2, low, high)
    return retarget(task, replace(appearance, grey=grey,
                                  **{name: getattr(task.target, name) for name in SHAPE_AND_BACKGROUND}))


def outline_points(centre: Tensor, angle: Tensor, scale: Tensor, radius: float) -> Tensor:
    """Tracks ``[5, F, 2]``: the centre and the ends of the two axes (``radius`` x scale from it)."""
    points = [centre]
    for turn in (0.0, math.pi / 2, math.pi, 3 * math.pi / 2):
        direction = torch.stack([torch.cos(angle + turn), torch.sin(angle + turn)], dim=-1)
        points.append(centre + radius * scale[:, None] * direction)
    return torch.stack(points)


def _filled(values: Tensor, found: Tensor) -> Tensor | None:
    """Missing frames take the nearest earlier found value (the first found one at the start)."""
    if not bool(found.any()):
        return None
    out = values.clone()
    first = int(found.nonzero()[0])
    out[:first] = values[first]
    for f in range(first + 1, len(found)):
        if not found[f]:
            out[f] = out[f - 1]
    return out


def _unwrapped(angle: Tensor, start: float) -> Tensor:
    """Angles modulo pi made continuous (steps below pi/2), starting at ``start``."""
    steps = wrap_half_turn(angle[1:] - angle[:-1])
    return start + torch.cat([angle.new_zeros(1), steps.cumsum(0)])


MIN_BACKGROUND_CONTRAST = 0.1
"""Background leak is measured only when A's and B's backgrounds differ by this much in brightness."""


def background_brightness(frames: Tensor, colours: Tensor) -> float:
    """Mean brightness of ``frames [F, H, W, 3]`` away from every shape colour in ``colours [P, 3]``."""
    shapes = torch.stack([colour_mask(frames, colour) for colour in colours]).amax(0)
    weight = (shapes < 0.05).float()
    return float((frames.mean(-1) * weight).sum() / weight.sum().clamp(min=1.0))


@dataclass
class SampleScores:
    """Scores of samples of appearance B against motion M (means over samples and shapes; NaN where undefined).

    ``found``: the share of frames where B is identified, by colour AND shape (:mod:`.identity`). ``copied``: the
    share of samples closer (pixel MSE) to the reference clip than to the ideal output, B moving with M;
    ``copy_ratio``: the median of MSE to the reference / MSE to the ideal (below 1 = closer to the reference).
    Both are NaN when B is A (the control: the ideal output is the reference itself).
    """

    error: float
    fidelity: float
    leak: float
    found: float
    copied: float
    copy_ratio: float


def _shape_identified(clip: Tensor, t, task: TransferTask, p: int) -> Tensor:
    own, other = shape_match(clip, t, task.target, task.reference.appearance, p, task.target.colours()[0, p])
    return identified(own, other)


def score_samples(frames: Tensor, task: TransferTask) -> SampleScores:
    """Score generated RGB ``frames [S, F, H, W, 3]`` of appearance B against the task's motion M."""
    ref, target = task.reference, task.target
    colours_b, colours_a = target.colours()[0], ref.appearance.colours()[0]
    same_colours = bool(torch.allclose(colours_a, colours_b))
    control = is_reference(task)
    ideal = render(task.target_scene())[0]
    background_a = background_b = None
    if same_colours and not control:  # A's colour leak cannot be told from B itself: measure A's background
        background_a = background_brightness(task.frames, colours_a)
        background_b = background_brightness(ideal, colours_b)
        if abs(background_a - background_b) < MIN_BACKGROUND_CONTRAST:
            background_a = None
    errors, fidelities, leaks, found, ratios = [], [], [], [], []
    for clip in frames:
        for p in range(int(target.present[0].sum())):
            radius = float(target.radius()[0, p])
            t = track(clip, colours_b[p], float(target.area()[0, p]), radius)
            found.append(_shape_identified(clip, t, task, p).float().mean())
            truth = (ref.poses.centres()[0, p].double(), ref.poses.angle[0, p].double(), ref.poses.scale[0, p].double())
            error = motion_error(Motion.of_track(t), Motion.of_poses(*truth), radius)
            if bool((~error.isnan()).any()):
                errors.append(error[~error.isnan()].mean())
            centre, angle, scale = (_filled(v, t.found) for v in (t.centre, t.angle, t.scale))
            if centre is not None:
                generated = outline_points(centre, _unwrapped(angle, float(truth[1][0])), scale, radius)
                fidelities.append(torch.tensor(trajectory_fidelity(outline_points(*truth, radius), generated)))
            if not same_colours:
                leaked = main_blob(colour_mask(clip, colours_a[p])).sum(dim=(-2, -1)) / float(ref.appearance.area()[0, p])
                leaks.append(leaked.mean())
        if same_colours and background_a is not None:
            moved = background_brightness(clip, colours_b) - background_b
            leaks.append(torch.tensor(moved / (background_a - background_b)))
        if not control:
            ratios.append(copy_ratio(clip, task.frames, ideal))
    mean = lambda values: float(torch.stack(values).mean()) if values else float("nan")  # noqa: E731
    copied = sum(r < 1.0 for r in ratios) / len(ratios) if ratios else float("nan")
    median = float(torch.tensor(ratios).median()) if ratios else float("nan")
    return SampleScores(error=mean(errors), fidelity=mean(fidelities), leak=mean(leaks), found=mean(found),
                        copied=copied, copy_ratio=median)


@torch.no_grad()
def generate(model: nn.Module, task: TransferTask, samples: int, seed: int, steps: int = 25,
             strength: float | None = 1.0) -> Tensor:
    """RGB samples ``[S, F, H, W, 3]`` of appearance B; ``strength`` of the motion LoRA (None: the model has
    no LoRA). The spatial LoRA, if any, is off. The same seed gives the same initial noise at any strength."""
    if strength is not None:
        set_lora_scale(model, MOTION_ADAPTER, strength)
        try:
            enable_lora(model, SPATIAL_ADAPTER, False)
        except ValueError:
            pass  # trained without the spatial path
    tokens = task.target_tokens.expand(samples, -1, -1)
    latents = sample(model, tokens, task.reference.poses.frames, task.reference.width,
                     torch.Generator().manual_seed(seed), steps)
    if strength is not None:
        set_lora_scale(model, MOTION_ADAPTER, 1.0)
    return decode(latents).cpu()


def evaluate(model: nn.Module, task: TransferTask, strengths: tuple[float, ...] = (1.0,), samples: int = 4,
             seed: int = 0, steps: int = 25) -> dict[float, SampleScores]:
    """Scores at each motion-LoRA strength (0 = the base alone), same initial noise for all."""
    return {s: score_samples(generate(model, task, samples, seed, steps, s), task) for s in strengths}
