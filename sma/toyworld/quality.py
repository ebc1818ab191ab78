"""Is a toy base good enough to study motion transfer on? Judged by its samples, never by its loss.

Three checks on samples for random appearances (every motion family's appearances, one or two shapes):

1. recognisable: the conditioned shape is found by its colour in at least ``MIN_FOUND`` of the frames;
2. moving: the mean centroid displacement per frame of the samples is within ``SPEED_RANGE`` x that of
   the training clips (measured by the same tracker);
3. the motion module matters: temporal coherence (the share of frame triples where the shape is found
   and its centroid accelerates less than ``ACCEL_LIMIT`` px/frame^2) drops by at least ``MIN_COHERENCE_DROP``
   when the motion modules are bypassed (every frame is then sampled on its own).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from .base import sample
from .codec import decode, embed_appearance
from .tracker import Motion, Track, track
from .world import FAMILIES, Nuisance, Scene, random_scenes, render

MIN_FOUND = 0.9
SPEED_RANGE = (0.5, 2.0)
ACCEL_LIMIT = 1.5
MIN_COHERENCE_DROP = 0.2


@dataclass
class ClipStats:
    """Tracker statistics of a batch of clips: ``found`` (share of frames), ``speed`` (mean centroid
    displacement, px/frame, over frame pairs found in both), ``coherence`` (share of coherent frame triples)."""

    found: float
    speed: float
    coherence: float


def _coherent(t: Track) -> torch.Tensor:
    """``[F-2]`` bool: found in three consecutive frames with a small centroid acceleration."""
    c = t.centre
    accel = (c[2:] - 2 * c[1:-1] + c[:-2]).norm(dim=-1)
    return t.found[2:] & t.found[1:-1] & t.found[:-2] & (accel < ACCEL_LIMIT)


def clip_stats(frames: torch.Tensor, scene: Scene) -> ClipStats:
    """Track every shape of ``scene`` in ``frames [B, F, H, W, 3]`` (its appearance's colours)."""
    app = scene.appearance
    colours, areas, radii = app.colours(), app.area(), app.radius()
    found, speeds, coherent = [], [], []
    for i in range(app.batch):
        for p in range(app.present.shape[1]):
            if app.present[i, p] == 0:
                continue
            t = track(frames[i].cpu(), colours[i, p].cpu(), float(areas[i, p]), float(radii[i, p]))
            found.append(t.found.float())
            speed = Motion.of_track(t).displacement.norm(dim=-1)
            speeds.append(speed[~speed.isnan()])
            coherent.append(_coherent(t).float())
    moved = torch.cat(speeds)
    return ClipStats(found=float(torch.cat(found).mean()),
                     speed=float(moved.mean()) if moved.numel() else float("nan"),
                     coherence=float(torch.cat(coherent).mean()))


@dataclass
class QualityReport:
    """The three checks' numbers: samples, samples with motion modules bypassed, training clips."""

    samples: ClipStats
    bypassed: ClipStats
    training: ClipStats
    clips: int
    steps: int

    @property
    def recognisable(self) -> bool:
        return self.samples.found >= MIN_FOUND

    @property
    def moving(self) -> bool:
        low, high = SPEED_RANGE
        return low * self.training.speed <= self.samples.speed <= high * self.training.speed

    @property
    def motion_module_matters(self) -> bool:
        return self.samples.coherence - self.bypassed.coherence >= MIN_COHERENCE_DROP

    @property
    def passed(self) -> bool:
        return self.recognisable and self.moving and self.motion_module_matters

    def to_dict(self) -> dict:
        return {"samples": asdict(self.samples), "bypassed": asdict(self.bypassed),
                "training": asdict(self.training), "clips": self.clips, "sampling_steps": self.steps,
                "recognisable": self.recognisable, "moving": self.moving,
                "motion_module_matters": self.motion_module_matters, "passed": self.passed}

    def summary(self) -> str:
        s, b, t = self.samples, self.bypassed, self.training
        return "\n".join([
            f"recognisable: shape found in {s.found:.0%} of sampled frames (need >= {MIN_FOUND:.0%}): "
            f"{'ok' if self.recognisable else 'FAIL'}",
            f"moving: samples {s.speed:.2f} px/frame, training clips {t.speed:.2f} px/frame (need "
            f"{SPEED_RANGE[0]}-{SPEED_RANGE[1]}x): {'ok' if self.moving else 'FAIL'}",
            f"motion module matters: coherence {s.coherence:.2f} with, {b.coherence:.2f} bypassed "
            f"(training clips {t.coherence:.2f}; need a drop >= {MIN_COHERENCE_DROP}): "
            f"{'ok' if self.motion_module_matters else 'FAIL'}",
        ])


@torch.no_grad()
def check_base(model: nn.Module, clips: int = 14, frames: int = 8, size: int = 16, steps: int = 25,
               seed: int = 0) -> QualityReport:
    """Sample ``clips`` appearances (all motion families' kinds) with and without the motion modules and
    compare with the same number of training clips. Deterministic for a seed (CPU noise)."""
    scene = random_scenes(FAMILIES, clips, frames, size, seed=seed)
    tokens = embed_appearance(scene.appearance, int(model.config.cross_attention_dim), size)
    g = torch.Generator().manual_seed(seed)
    with_motion = decode(sample(model, tokens, frames, size, g, steps)).cpu()
    g = torch.Generator().manual_seed(seed)
    bypassed = decode(sample(model, tokens, frames, size, g, steps, bypass_motion=True)).cpu()
    training = render(scene, Nuisance(), torch.Generator().manual_seed(seed))
    return QualityReport(clip_stats(with_motion, scene), clip_stats(bypassed, scene), clip_stats(training, scene),
                         clips, steps)
