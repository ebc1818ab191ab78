"""Synthetic reference clips with known motion, for the tests.

Coloured, anti-aliased shapes (squares and discs) move with sub-pixel accuracy over a grey textured
background, and the clip comes with the ground-truth trajectories of the shape centres. Coordinates
are pixels, ``x`` to the right and ``y`` down, with the centre of pixel (row ``i``, column ``j``) at
``(j, i)``. The background is grey (R = G = B) and every shape has one saturated colour, so a pixel's
chroma (max - min over RGB) is exactly ``coverage * chroma(colour)``: shapes can be measured from the
frames alone.

Motions: ``translate`` (each shape moves on its own straight line at constant velocity, static
background), ``pan`` (the camera pans: shapes and background move together), ``rotate`` (shapes orbit
the frame centre and spin, static background), ``zoom`` (the camera zooms in: everything grows from the
centre at a constant rate per frame).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from sma.errors import SMAInputError

MOTIONS = ("translate", "pan", "rotate", "zoom")
SHAPES = ("square", "disc")
# One saturated colour per shape (at most this many shapes per clip).
PALETTE = ((0.90, 0.15, 0.15), (0.15, 0.75, 0.20), (0.20, 0.35, 0.95))
_MAX_TRIES = 5000


@dataclass
class SyntheticClip:
    """``frames``: ``[F, H, W, 3]`` float32 in 0..1. ``trajectories``: ``[P, F, 2]`` float32 ``(x, y)``
    of each shape's centre per frame. ``fps``: nominal rate for writing / previews."""

    frames: torch.Tensor
    trajectories: torch.Tensor
    fps: float = 8.0


@dataclass
class _Scene:
    """Everything drawn, per frame (float64): shapes ``centres [P, F, 2]``, ``sizes [P, F]`` (disc
    radius / half the square's side), ``angles [P, F]``; camera ``zoom [F]`` and ``shift [F, 2]``
    (image point ``p`` shows background point ``c + (p - c) / zoom - shift``, ``c`` the frame centre)."""

    kinds: tuple[str, ...]
    centres: torch.Tensor
    sizes: torch.Tensor
    angles: torch.Tensor
    zoom: torch.Tensor
    shift: torch.Tensor


def _uniform(g: torch.Generator, low: float, high: float, *shape: int) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape or (1,), generator=g, dtype=torch.float64)


# --- drawing ----------------------------------------------------------------------------------------

class _Texture:
    """A smooth grey background: a few plane waves plus a gentle gradient, as a function of (u, v)."""

    def __init__(self, g: torch.Generator, height: int, width: int, waves: int = 4) -> None:
        side = min(height, width)
        theta = _uniform(g, 0.0, math.pi, waves)
        wavelength = torch.clamp(_uniform(g, 0.15, 0.45, waves) * side, min=6.0)
        self.kx, self.ky = torch.cos(theta) / wavelength, torch.sin(theta) / wavelength
        self.amplitude = _uniform(g, 0.03, 0.06, waves)
        self.phase = _uniform(g, 0.0, 2 * math.pi, waves)
        self.gradient = _uniform(g, -0.08, 0.08, 2) / side
        self.centre = ((width - 1) / 2, (height - 1) / 2)

    def __call__(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Luminance ``[H, W]`` in about 0.25..0.75 at background points ``u, v [H, W]``."""
        lum = 0.5 + self.gradient[0] * (u - self.centre[0]) + self.gradient[1] * (v - self.centre[1])
        for kx, ky, a, phase in zip(self.kx, self.ky, self.amplitude, self.phase):
            lum = lum + a * torch.sin(2 * math.pi * (kx * u + ky * v) + phase)
        return lum.clamp(0.05, 0.95)


def _coverage(kind: str, xs: torch.Tensor, ys: torch.Tensor, centre: torch.Tensor, size: float,
              angle: float) -> torch.Tensor:
    """Anti-aliased coverage ``[H, W]`` in 0..1: a 1-px linear ramp across the shape's edge (from its
    signed distance), so the centroid follows the centre to sub-pixel accuracy."""
    dx, dy = xs - centre[0], ys - centre[1]
    if kind == "disc":
        distance = torch.hypot(dx, dy) - size
    else:
        c, s = math.cos(angle), math.sin(angle)
        qx = (c * dx + s * dy).abs() - size
        qy = (c * dy - s * dx).abs() - size
        distance = torch.hypot(qx.clamp(min=0), qy.clamp(min=0)) + torch.maximum(qx, qy).clamp(max=0)
    return (0.5 - distance).clamp(0.0, 1.0)


def _render(scene: _Scene, texture: _Texture, height: int, width: int) -> torch.Tensor:
    """Draw ``scene`` frame by frame: ``[F, H, W, 3]`` float32."""
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float64),
                            torch.arange(width, dtype=torch.float64), indexing="ij")
    cx, cy = texture.centre
    n_frames = scene.zoom.shape[0]
    out = torch.empty(n_frames, height, width, 3, dtype=torch.float32)
    for f in range(n_frames):
        u = cx + (xs - cx) / scene.zoom[f] - scene.shift[f, 0]
        v = cy + (ys - cy) / scene.zoom[f] - scene.shift[f, 1]
        image = texture(u, v).unsqueeze(-1).expand(height, width, 3)
        for p, kind in enumerate(scene.kinds):
            alpha = _coverage(kind, xs, ys, scene.centres[p, f], float(scene.sizes[p, f]),
                              float(scene.angles[p, f])).unsqueeze(-1)
            image = image * (1 - alpha) + alpha * torch.tensor(PALETTE[p], dtype=torch.float64)
        out[f] = image
    return out


# --- motion -----------------------------------------------------------------------------------------

def _extent(kinds: tuple[str, ...], sizes: torch.Tensor) -> torch.Tensor:
    """Radius ``[P, F]`` of a disc holding each shape at any rotation, plus its 1-px edge ramp."""
    corner = torch.tensor([math.sqrt(2) if k == "square" else 1.0 for k in kinds], dtype=torch.float64)
    return sizes * corner[:, None] + 1.0


def _fits(scene: _Scene, height: int, width: int) -> bool:
    """Every shape inside the frame on every frame, and no two shapes touching."""
    reach = _extent(scene.kinds, scene.sizes)
    if bool(scene.centres.isnan().any()):
        return False
    x, y = scene.centres[..., 0], scene.centres[..., 1]
    inside = (x - reach >= 0) & (x + reach <= width - 1) & (y - reach >= 0) & (y + reach <= height - 1)
    if not bool(inside.all()):
        return False
    gaps = torch.cdist(scene.centres.transpose(0, 1), scene.centres.transpose(0, 1))  # [F, P, P]
    needed = reach.T[:, :, None] + reach.T[:, None, :] + 1.0
    off_diagonal = ~torch.eye(len(scene.kinds), dtype=torch.bool)
    return bool((gaps >= needed)[:, off_diagonal].all())


def _velocities(g: torch.Generator, count: int, scale: float) -> torch.Tensor:
    """``count`` random per-frame velocities ``[count, 2]`` of 0.2-0.4 ``scale`` (frame side / steps)."""
    heading = _uniform(g, 0.0, 2 * math.pi, count)
    speed = _uniform(g, 0.2, 0.4, count) * scale
    return torch.stack([torch.cos(heading), torch.sin(heading)], dim=-1) * speed[:, None]


def _starts(g: torch.Generator, offsets: torch.Tensor, reach: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Start points ``[P, 2]`` drawn where ``start + offsets [P, F, 2]`` keeps a shape of radius
    ``reach [P]`` in the frame on every frame (nan where nothing fits; the fit check rejects it)."""
    bound = torch.tensor([width - 1, height - 1], dtype=torch.float64)
    low = reach[:, None] - offsets.amin(dim=1)
    high = bound - reach[:, None] - offsets.amax(dim=1)
    picked = low + (high - low) * torch.rand(offsets.shape[0], 2, generator=g, dtype=torch.float64)
    return torch.where(high >= low, picked, torch.nan)


def _propose(motion: str, g: torch.Generator, n_frames: int, height: int, width: int,
             kinds: tuple[str, ...]) -> _Scene:
    """One random scene for ``motion`` (it may not fit; the caller checks and retries)."""
    n = len(kinds)
    side = min(height, width)
    t = torch.arange(n_frames, dtype=torch.float64)
    steps = max(n_frames - 1, 1)
    centre = torch.tensor([(width - 1) / 2, (height - 1) / 2], dtype=torch.float64)
    sizes = (_uniform(g, 0.08, 0.12, n) * side)[:, None].expand(n, n_frames)
    spin0 = _uniform(g, 0.0, math.pi / 2, n)[:, None]
    angles = spin0.expand(n, n_frames)
    zoom = torch.ones(n_frames, dtype=torch.float64)
    shift = torch.zeros(n_frames, 2, dtype=torch.float64)
    reach = _extent(kinds, sizes)[:, 0]
    if motion == "translate":
        offsets = t[None, :, None] * _velocities(g, n, side / steps)[:, None, :]
        centres = _starts(g, offsets, reach, height, width)[:, None, :] + offsets
    elif motion == "pan":
        shift = t[:, None] * _velocities(g, 1, side / steps)
        offsets = shift[None].expand(n, n_frames, 2)
        centres = _starts(g, offsets, reach, height, width)[:, None, :] + offsets
    elif motion == "rotate":
        direction = 1 if torch.rand(1, generator=g) < 0.5 else -1
        omega = direction * _uniform(g, math.pi / 4, math.pi / 2, 1) / steps
        radius = _uniform(g, 0.15, 0.35, n) * side
        phase = _uniform(g, 0.0, 2 * math.pi, n)
        turn = phase[:, None] + omega * t[None, :]
        centres = centre + radius[:, None, None] * torch.stack([torch.cos(turn), torch.sin(turn)], dim=-1)
        angles = spin0 + omega * t[None, :]
    elif motion == "zoom":
        zoom = _uniform(g, 1.25, 1.5, 1) ** (t / steps)
        sizes = sizes * zoom[None, :]
        half = centre - _extent(kinds, sizes)[:, -1, None]  # [P, 2]: room around the centre at the end
        start = centre + half / zoom[-1] * (2 * torch.rand(n, 2, generator=g, dtype=torch.float64) - 1)
        centres = centre + (start - centre)[:, None, :] * zoom[None, :, None]
    else:
        raise SMAInputError(f"unknown motion {motion!r}; choose one of {', '.join(MOTIONS)}.")
    return _Scene(kinds, centres, sizes, angles, zoom, shift)


def _check_size(frames: int, height: int, width: int) -> None:
    if frames < 2:
        raise SMAInputError(f"a clip needs at least 2 frames to move, got frames={frames}.")
    if min(height, width) < 16:
        raise SMAInputError(f"synthetic clips need at least 16x16 px, got {width}x{height}.")


def moving_shapes_clip(frames: int = 16, height: int = 64, width: int = 64, seed: int = 0,
                       motion: str = "translate", shapes: int = 2, fps: float = 8.0) -> SyntheticClip:
    """Squares and discs (alternating, ``shapes`` <= 3) moving by ``motion`` (see MOTIONS) over a
    textured grey background; deterministic per ``seed``. Trajectories ``[shapes, frames, 2]``."""
    _check_size(frames, height, width)
    if motion not in MOTIONS:
        raise SMAInputError(f"unknown motion {motion!r}; choose one of {', '.join(MOTIONS)}.")
    if not 1 <= shapes <= len(PALETTE):
        raise SMAInputError(f"shapes must be 1 to {len(PALETTE)}, got {shapes}.")
    g = torch.Generator().manual_seed(seed)
    texture = _Texture(g, height, width)
    kinds = tuple(SHAPES[p % len(SHAPES)] for p in range(shapes))
    for _ in range(_MAX_TRIES):
        scene = _propose(motion, g, frames, height, width, kinds)
        if _fits(scene, height, width):
            return SyntheticClip(_render(scene, texture, height, width), scene.centres.to(torch.float32), fps)
    raise SMAInputError(
        f"could not place {shapes} shape(s) moving by {motion!r} in {width}x{height} px over {frames} frames; "
        "use a larger frame or fewer shapes."
    )


def translating_square(frames: int = 16, size: int = 64, velocity: tuple[float, float] = (1.0, 0.0),
                       side: int | None = None, seed: int = 0, fps: float = 8.0) -> SyntheticClip:
    """One axis-aligned square (``side`` px, default ``size // 4``) crossing a ``size x size`` frame
    at ``velocity`` px per frame, its path centred in the frame. Trajectories ``[1, frames, 2]``."""
    _check_size(frames, size, size)
    side = size // 4 if side is None else side
    if side < 2:
        raise SMAInputError(f"side must be at least 2 px, got {side}.")
    g = torch.Generator().manual_seed(seed)
    texture = _Texture(g, size, size)
    t = torch.arange(frames, dtype=torch.float64)
    v = torch.tensor(velocity, dtype=torch.float64)
    centres = ((size - 1) / 2 + (t - (frames - 1) / 2)[:, None] * v)[None]  # [1, F, 2]
    scene = _Scene(("square",), centres, torch.full((1, frames), side / 2, dtype=torch.float64),
                   torch.zeros(1, frames, dtype=torch.float64), torch.ones(frames, dtype=torch.float64),
                   torch.zeros(frames, 2, dtype=torch.float64))
    if not _fits(scene, size, size):
        raise SMAInputError(
            f"a {side}-px square at velocity {tuple(velocity)} px/frame leaves the {size}x{size} frame within "
            f"{frames} frames; lower the velocity or the frame count, or raise size."
        )
    return SyntheticClip(_render(scene, texture, size, size), centres.to(torch.float32), fps)
