"""Procedural clips of coloured shapes whose motion is known exactly, rendered in batches.

Coordinates are pixels, ``x`` to the right and ``y`` down, with the centre of pixel (row ``i``,
column ``j``) at ``(j, i)``. A clip is a :class:`Scene`: an :class:`Appearance` (what is drawn) and
:class:`Poses` (where, per frame), drawn independently of each other. Every shape is elongated
(aspect 1.5-2), so its orientation is measurable from its pixels, and has one saturated colour over a
grey textured background (R = G = B), so a pixel's chroma (max - min over RGB) is its coverage times the
colour's chroma.

Motion families (:data:`FAMILIES`), sizes and speeds for the default 16 x 16 px, 8-frame clips (they
scale with the frame side):

- ``translate``: constant velocity at any angle, 0.5-1.2 px/frame;
- ``orbit``: circular orbit of radius 2.5-4 px at 0.6-1.3 px/frame, either direction;
- ``zoom``: the shape grows or shrinks by 7-11 % per frame about a fixed centre;
- ``rotate``: the shape spins in place at 0.2-0.4 rad/frame, either direction;
- ``oscillate``: back and forth along any direction, amplitude 1.5-2.5 px, period 6-10 frames;
- ``turn``: constant velocity, then a sudden direction change by 90-150 degrees;
- ``two_shapes``: two smaller shapes of different colours translating in directions at least 90 degrees
  apart, 0.4-0.8 px/frame.

Nuisance unrelated to motion (:class:`Nuisance`): sensor noise, per-frame brightness flicker and a slow
colour drift of the whole frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor

from ..errors import SMAInputError

FAMILIES = ("translate", "orbit", "zoom", "rotate", "oscillate", "turn", "two_shapes")
KINDS = ("rect", "ellipse", "triangle")
HUES_DEG = (0.0, 60.0, 120.0, 180.0, 240.0, 300.0)
SATURATION = 0.85
GREY_RANGE = (0.35, 0.65)
"""Background grey levels drawn for random appearances."""
BASE_SIDE = 16
"""Sizes and speeds below are for this frame side and scale with it."""
WAVES = 3
_TRIES = 150


def hsv_to_rgb(hue: Tensor, saturation: float | Tensor, value: Tensor) -> Tensor:
    """Colours ``[..., 3]`` in 0..1 from ``hue`` (radians) and ``value`` of the same shape."""
    h = (hue % (2 * math.pi)) / (math.pi / 3)  # 0..6
    k = (torch.tensor([5.0, 3.0, 1.0], device=hue.device) + h[..., None]) % 6
    ramp = torch.clamp(torch.minimum(k, 4 - k), 0, 1)
    return value[..., None] * (1 - saturation * ramp)


@dataclass
class Appearance:
    """What a batch of clips shows: ``B`` clips with up to ``P`` shapes each (all fields tensors).

    Attributes:
        hue: ``[B, P]`` radians (one of :data:`HUES_DEG` plus a small jitter).
        value: ``[B, P]`` brightness of the colour, 0.8-1.
        kind: ``[B, P]`` long index into :data:`KINDS`.
        size: ``[B, P]`` half-length of the major axis in px at scale 1.
        aspect: ``[B, P]`` major / minor axis, 1.5-2.
        striped: ``[B, P]`` 1 = the shape has stripes (brightness texture), 0 = solid.
        present: ``[B, P]`` 1 = the shape is drawn (clips of one shape leave the second absent).
        grey: ``[B]`` background grey level.
        waves: ``[B, WAVES, 4]`` background texture: plane waves (kx, ky, amplitude, phase).
    """

    hue: Tensor
    value: Tensor
    kind: Tensor
    size: Tensor
    aspect: Tensor
    striped: Tensor
    present: Tensor
    grey: Tensor
    waves: Tensor

    @property
    def batch(self) -> int:
        return int(self.hue.shape[0])

    def colours(self) -> Tensor:
        """``[B, P, 3]`` RGB colour of each shape."""
        return hsv_to_rgb(self.hue, SATURATION, self.value)

    def area(self) -> Tensor:
        """``[B, P]`` area in px at scale 1 (half-axes a, b: rect 4ab, ellipse pi ab, triangle 3ab)."""
        a = self.size
        b = self.size / self.aspect
        factor = torch.tensor([4.0, math.pi, 3.0], device=a.device)[self.kind]
        return factor * a * b

    def radius(self) -> Tensor:
        """``[B, P]`` radius of gyration in px at scale 1 (sets how far a spin moves the outline)."""
        return self.size * 0.7

    def select(self, index: Tensor | slice) -> "Appearance":
        return Appearance(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def to(self, device: torch.device | str) -> "Appearance":
        return Appearance(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


@dataclass
class Poses:
    """Where each shape is, per frame: ``cx, cy, angle`` (radians) and ``scale`` (1 = appearance size),
    each ``[B, P, F]``. ``family``: the motion family of each clip (names from :data:`FAMILIES`)."""

    cx: Tensor
    cy: Tensor
    angle: Tensor
    scale: Tensor
    family: tuple[str, ...]

    @property
    def frames(self) -> int:
        return int(self.cx.shape[-1])

    def centres(self) -> Tensor:
        """``[B, P, F, 2]`` (x, y) per shape and frame."""
        return torch.stack([self.cx, self.cy], dim=-1)

    def select(self, index: int) -> "Poses":
        """The poses of clip ``index`` (keeps a batch dimension of 1)."""
        return Poses(self.cx[index:index + 1], self.cy[index:index + 1], self.angle[index:index + 1],
                     self.scale[index:index + 1], (self.family[index],))

    def to(self, device: torch.device | str) -> "Poses":
        return Poses(self.cx.to(device), self.cy.to(device), self.angle.to(device), self.scale.to(device),
                     self.family)


@dataclass(frozen=True)
class Nuisance:
    """Motion-unrelated disturbances: Gaussian sensor noise (std), per-frame brightness flicker (std of a
    gain around 1) and a slow colour drift (largest tint reached at the last frame, per channel)."""

    noise: float = 0.015
    flicker: float = 0.02
    drift: float = 0.03

    @staticmethod
    def none() -> "Nuisance":
        return Nuisance(0.0, 0.0, 0.0)


@dataclass
class Scene:
    """A batch of clips: appearance + poses (+ frame size). Render with :func:`render`."""

    appearance: Appearance
    poses: Poses
    height: int
    width: int

    def select(self, index: int) -> "Scene":
        """Clip ``index`` as a batch of one."""
        return Scene(self.appearance.select(slice(index, index + 1)), self.poses.select(index), self.height,
                     self.width)

    def to(self, device: torch.device | str) -> "Scene":
        return Scene(self.appearance.to(device), self.poses.to(device), self.height, self.width)


def _uniform(g: torch.Generator, low: float, high: float, *shape: int) -> Tensor:
    return low + (high - low) * torch.rand(shape, generator=g)


def _sign(g: torch.Generator, *shape: int) -> Tensor:
    return torch.where(torch.rand(shape, generator=g) < 0.5, -1.0, 1.0)


def random_appearance(batch: int, shapes: int = 1, side: int = BASE_SIDE, generator: torch.Generator | None = None,
                      ) -> Appearance:
    """``batch`` random appearances with ``shapes`` (1 or 2) shapes of different hues (CPU tensors, P = 2)."""
    if shapes not in (1, 2):
        raise SMAInputError(f"a toy clip has 1 or 2 shapes, got {shapes}.")
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    unit = side / BASE_SIDE
    first = torch.randint(0, len(HUES_DEG), (batch,), generator=g)
    second = (first + torch.randint(2, len(HUES_DEG) - 1, (batch,), generator=g)) % len(HUES_DEG)  # >= 120 deg apart
    base = torch.tensor(HUES_DEG)[torch.stack([first, second], dim=1)] * math.pi / 180
    hue = base + _uniform(g, -0.1, 0.1, batch, 2)
    small = 0.75 if shapes == 2 else 1.0
    present = torch.zeros(batch, 2)
    present[:, :shapes] = 1.0
    wave_angle = _uniform(g, 0, math.pi, batch, WAVES)
    wavelength = _uniform(g, 5.0, 10.0, batch, WAVES) * unit
    waves = torch.stack([torch.cos(wave_angle) / wavelength, torch.sin(wave_angle) / wavelength,
                         _uniform(g, 0.02, 0.05, batch, WAVES), _uniform(g, 0, 2 * math.pi, batch, WAVES)], dim=-1)
    return Appearance(
        hue=hue, value=_uniform(g, 0.8, 1.0, batch, 2), kind=torch.randint(0, len(KINDS), (batch, 2), generator=g),
        size=_uniform(g, 2.6, 3.4, batch, 2) * unit * small, aspect=_uniform(g, 1.5, 2.0, batch, 2),
        striped=(torch.rand(batch, 2, generator=g) < 0.5).float(), present=present,
        grey=_uniform(g, *GREY_RANGE, batch), waves=waves)


def _direction(angle: Tensor) -> Tensor:
    return torch.stack([torch.cos(angle), torch.sin(angle)], dim=-1)


def _offsets(family: str, g: torch.Generator, n: int, frames: int, unit: float
             ) -> tuple[Tensor, Tensor, Tensor]:
    """Offsets from the start ``[n, 2, F, 2]``, spin ``[n, 2, F]`` (added to the start angle) and scale
    ``[n, 2, F]`` of ``n`` clips of ``family`` (both shape slots; one-shape families repeat slot 0)."""
    t = torch.arange(frames, dtype=torch.float32)
    zeros = torch.zeros(n, 2, frames)
    ones = torch.ones(n, 2, frames)
    if family in ("translate", "two_shapes"):
        heading = _uniform(g, 0, 2 * math.pi, n, 1)
        if family == "two_shapes":
            heading = torch.cat([heading, heading + _sign(g, n, 1) * _uniform(g, math.pi / 2, math.pi, n, 1)], 1)
        else:
            heading = heading.expand(n, 2)
        speed = (_uniform(g, 0.5, 1.2, n, 2) if family == "translate" else _uniform(g, 0.4, 0.8, n, 2)) * unit
        velocity = _direction(heading) * speed[..., None]  # [n, 2, 2]
        return velocity[:, :, None, :] * t[None, None, :, None], zeros, ones
    if family == "orbit":
        radius = _uniform(g, 2.5, 4.0, n, 1) * unit
        omega = _sign(g, n, 1) * _uniform(g, 0.6, 1.3, n, 1) * unit / radius
        phase = _uniform(g, 0, 2 * math.pi, n, 1)
        turn = phase[..., None] + omega[..., None] * t  # [n, 1, F]
        path = radius[..., None, None] * (_direction(turn) - _direction(phase)[:, :, None, :])
        return path.expand(n, 2, frames, 2), zeros, ones
    if family == "zoom":
        rate = _sign(g, n, 1) * _uniform(g, 0.07, 0.11, n, 1)
        scale = torch.exp(rate[..., None] * (t - (frames - 1) / 2)).expand(n, 2, frames)
        return torch.zeros(n, 2, frames, 2), zeros, scale
    if family == "rotate":
        omega = _sign(g, n, 1) * _uniform(g, 0.2, 0.4, n, 1)
        return torch.zeros(n, 2, frames, 2), (omega[..., None] * t).expand(n, 2, frames), ones
    if family == "oscillate":
        axis = _direction(_uniform(g, 0, math.pi, n, 1))  # [n, 1, 2]
        amplitude = _uniform(g, 1.5, 2.5, n, 1) * unit
        period = _uniform(g, 6.0, 10.0, n, 1)
        phase = _uniform(g, 0, 2 * math.pi, n, 1)
        wave = torch.sin(2 * math.pi * t / period[..., None] + phase[..., None]) - torch.sin(phase)[..., None]
        path = (amplitude[..., None] * wave)[..., None] * axis[:, :, None, :]
        return path.expand(n, 2, frames, 2), zeros, ones
    if family == "turn":
        heading = _uniform(g, 0, 2 * math.pi, n, 1)
        heading2 = heading + _sign(g, n, 1) * _uniform(g, math.pi / 2, 5 * math.pi / 6, n, 1)
        speed = _uniform(g, 0.6, 1.2, n, 1) * unit
        switch = torch.randint(2, max(3, frames - 2), (n, 1), generator=g).float()
        before = torch.minimum(t, switch[..., None])[..., None]  # [n, 1, F, 1]
        after = torch.clamp(t - switch[..., None], min=0)[..., None]
        path = (before * _direction(heading)[:, :, None, :] + after * _direction(heading2)[:, :, None, :]) \
            * speed[..., None, None]
        return path.expand(n, 2, frames, 2), zeros, ones
    raise SMAInputError(f"unknown motion family {family!r}; choose one of {', '.join(FAMILIES)}.")


def reach(appearance: Appearance, scale: Tensor) -> Tensor:
    """``[B, P, F]`` radius of a disc that holds each shape at any angle, plus the 1-px edge ramp."""
    corner = torch.sqrt(1 + appearance.aspect ** -2)  # rect corner; covers the ellipse and the triangle
    return appearance.size[..., None] * corner[..., None] * scale + 0.5


def _place(offsets: Tensor, reach_: Tensor, height: int, width: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """Start points ``[n, 2, 2]`` keeping each path inside the frame, and a fits mask ``[n]``."""
    bound = torch.tensor([width - 1.0, height - 1.0])
    margin = reach_.amax(dim=-1)[..., None]  # [n, 2, 1]
    low = margin - offsets.amin(dim=2)
    high = bound - margin - offsets.amax(dim=2)
    fits = (high >= low).all(dim=-1).all(dim=-1)
    start = low + (high - low).clamp(min=0) * torch.rand(low.shape, generator=g)
    return start, fits


def _apart(appearance: Appearance, centres: Tensor, angle: Tensor, scale: Tensor, height: int, width: int) -> Tensor:
    """``[n]``: the two shapes never overlap, measured on their drawn coverage (true without a second shape)."""
    if not bool(appearance.present[:, 1].any()):
        return torch.ones(appearance.batch, dtype=torch.bool)
    poses = Poses(centres[..., 0], centres[..., 1], angle, scale, ("",) * appearance.batch)
    alpha = coverage(Scene(appearance, poses, height, width))
    return (alpha[:, 0] * alpha[:, 1]).flatten(1).amax(dim=1) == 0


def random_poses(family: str, appearance: Appearance, frames: int = 8, height: int = BASE_SIDE,
                 width: int = BASE_SIDE, generator: torch.Generator | None = None) -> Poses:
    """Random poses of ``family`` for each clip of ``appearance`` (that fit the frame; CPU tensors).

    A path that finds no room after a few tries is shrunk about its start until it fits, so every clip
    moves exactly as its poses say.
    """
    if frames < 2:
        raise SMAInputError(f"a clip needs at least 2 frames to move, got {frames}.")
    if min(height, width) < 12:
        raise SMAInputError(f"toy clips need at least 12 x 12 px, got {width} x {height}.")
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    n = appearance.batch
    unit = min(height, width) / BASE_SIDE
    offsets, spin, scale = (x.clone() for x in _offsets(family, g, n, frames, unit))
    start_angle = _uniform(g, 0, math.pi, n, 2)[..., None]
    centres = torch.zeros(n, 2, frames, 2)
    todo = torch.arange(n)
    for attempt in range(_TRIES + 40):
        if attempt >= _TRIES:  # shrink the paths that still find no room
            offsets[todo] *= 0.8
        app = appearance.select(todo)
        r = reach(app, scale[todo])
        start, fits = _place(offsets[todo], r, height, width, g)
        proposal = start[:, :, None, :] + offsets[todo]
        ok = fits & _apart(app, proposal, start_angle[todo] + spin[todo], scale[todo], height, width)
        centres[todo[ok]] = proposal[ok]
        todo = todo[~ok]
        if not len(todo):
            break
        if attempt < _TRIES - 1:
            fresh = _offsets(family, g, len(todo), frames, unit)
            offsets[todo], spin[todo], scale[todo] = fresh
    if len(todo):
        raise SMAInputError(f"could not fit {family!r} motion into {width} x {height} px; use larger frames.")
    angle = start_angle + spin
    return Poses(centres[..., 0], centres[..., 1], angle, scale, (family,) * n)


def random_scenes(family: str | tuple[str, ...], batch: int, frames: int = 8, size: int = BASE_SIDE,
                  seed: int | None = None, generator: torch.Generator | None = None) -> Scene:
    """``batch`` clips of one family, or of a random mix of several (tuple), with random appearances."""
    g = generator if generator is not None else torch.Generator().manual_seed(0 if seed is None else seed)
    families = (family,) if isinstance(family, str) else tuple(family)
    for name in families:
        if name not in FAMILIES:
            raise SMAInputError(f"unknown motion family {name!r}; choose one of {', '.join(FAMILIES)}.")
    picks = torch.randint(0, len(families), (batch,), generator=g)
    parts: list[Scene] = []
    for index, name in enumerate(families):
        count = int((picks == index).sum())
        if count:
            appearance = random_appearance(count, 2 if name == "two_shapes" else 1, size, g)
            parts.append(Scene(appearance, random_poses(name, appearance, frames, size, size, g), size, size))
    return concat_scenes(parts)


def concat_scenes(scenes: list[Scene]) -> Scene:
    """One batch from several scenes of the same frame size and length."""
    first = scenes[0]
    appearance = Appearance(**{f.name: torch.cat([getattr(s.appearance, f.name) for s in scenes])
                               for f in fields(Appearance)})
    poses = Poses(*(torch.cat([getattr(s.poses, k) for s in scenes]) for k in ("cx", "cy", "angle", "scale")),
                  tuple(name for s in scenes for name in s.poses.family))
    return Scene(appearance, poses, first.height, first.width)


def with_appearance(scene: Scene, appearance: Appearance) -> Scene:
    """The same motion drawn with another appearance (same batch size and shape count)."""
    return replace(scene, appearance=appearance)


# --- drawing ------------------------------------------------------------------------------------------

def _grid(scene: Scene) -> tuple[Tensor, Tensor]:
    """Pixel-centre coordinates ``xs, ys [H, W]`` on the scene's device."""
    device = scene.appearance.hue.device
    ys, xs = torch.meshgrid(torch.arange(scene.height, dtype=torch.float32, device=device),
                            torch.arange(scene.width, dtype=torch.float32, device=device), indexing="ij")
    return xs, ys


def _local(scene: Scene, xs: Tensor, ys: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Pixel positions in each shape's own frame, in px at scale 1: ``u, v [B, P, F, H, W]``, and the
    scale ``[B, P, F, 1, 1]``."""
    p = scene.poses
    dx = xs - p.cx[..., None, None]
    dy = ys - p.cy[..., None, None]
    c, s = torch.cos(p.angle)[..., None, None], torch.sin(p.angle)[..., None, None]
    k = p.scale[..., None, None]
    return (c * dx + s * dy) / k, (c * dy - s * dx) / k, k


def _signed_distance(kind: Tensor, u: Tensor, v: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Signed distance (px at scale 1, negative inside) of each shape kind, selected per shape."""
    qx, qy = u.abs() - a, v.abs() - b
    rect = torch.hypot(qx.clamp(min=0), qy.clamp(min=0)) + torch.maximum(qx, qy).clamp(max=0)
    k0 = torch.hypot(u / a, v / b)
    k1 = torch.hypot(u / a ** 2, v / b ** 2).clamp(min=1e-6)
    ellipse = k0 * (k0 - 1) / k1
    # isosceles triangle with its centroid at the origin: apex (4a/3, 0), base at u = -2a/3, half-width b * 1.5
    apex, back, half = 4 * a / 3, -2 * a / 3, 1.5 * b
    length = torch.hypot(apex - back, half)
    side = ((u - apex) * half + v.abs() * (apex - back)) / length
    triangle = torch.maximum(back - u, side)
    shape = kind[..., None, None, None]
    return torch.where(shape == 0, rect, torch.where(shape == 1, ellipse, triangle))


def coverage(scene: Scene) -> Tensor:
    """Anti-aliased coverage ``[B, P, F, H, W]`` in 0..1 of each shape (0 for absent shapes)."""
    app = scene.appearance
    u, v, k = _local(scene, *_grid(scene))
    a = app.size[..., None, None, None]
    b = (app.size / app.aspect)[..., None, None, None]
    distance = _signed_distance(app.kind, u, v, a, b) * k
    return (0.5 - distance).clamp(0, 1) * app.present[..., None, None, None]


def _background(scene: Scene) -> Tensor:
    """Grey texture ``[B, H, W]`` (static: no family moves the camera)."""
    app = scene.appearance
    xs, ys = _grid(scene)
    w = app.waves[..., None, None]  # [B, K, 4, 1, 1]
    phase = 2 * math.pi * (w[:, :, 0] * xs + w[:, :, 1] * ys) + w[:, :, 3]
    return app.grey[:, None, None] + (w[:, :, 2] * torch.sin(phase)).sum(dim=1)


def render(scene: Scene, nuisance: Nuisance | None = None, generator: torch.Generator | None = None) -> Tensor:
    """Frames ``[B, F, H, W, 3]`` in 0..1 (float32, on the scene's device).

    Shapes are drawn in slot order over the background; stripes run across each shape's major axis
    and turn with it. ``nuisance`` (default none) draws its random values from ``generator``.
    """
    app = scene.appearance
    alpha = coverage(scene)  # [B, P, F, H, W]
    u, _, _ = _local(scene, *_grid(scene))
    stripes = 1 - 0.25 * app.striped[..., None, None, None] * (0.5 + 0.5 * torch.cos(2 * math.pi * u / 2.5))
    colours = app.colours()[:, :, None, None, None, :] * stripes[..., None]  # [B, P, F, H, W, 3]
    frames = _background(scene)[:, None, :, :, None].expand(-1, scene.poses.frames, -1, -1, 3)
    for p in range(alpha.shape[1]):
        a = alpha[:, p, ..., None]
        frames = frames * (1 - a) + a * colours[:, p]
    if nuisance is not None and (nuisance.noise or nuisance.flicker or nuisance.drift):
        frames = _disturb(frames, nuisance, generator)
    return frames.clamp(0, 1)


def _disturb(frames: Tensor, nuisance: Nuisance, generator: torch.Generator | None) -> Tensor:
    """Flicker, drift and noise drawn from ``generator`` (on its own device, then moved to the frames')."""
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    b, f = frames.shape[:2]
    gain = 1 + nuisance.flicker * torch.randn(b, f, 1, 1, 1, generator=g, device=g.device)
    tint = nuisance.drift * (2 * torch.rand(b, 1, 1, 1, 3, generator=g, device=g.device) - 1)
    ramp = torch.linspace(0, 1, f, device=g.device)[None, :, None, None, None]
    noise = nuisance.noise * torch.randn(frames.shape, generator=g, device=g.device)
    device = frames.device
    return frames * gain.to(device) + (tint * ramp).to(device) + noise.to(device)


def flow(scene: Scene) -> Tensor:
    """Ground-truth forward flow ``[B, F-1, H, W, 2]`` (px): where the surface seen at each pixel of
    frame ``f`` is at frame ``f + 1``. Pixels mostly covered (> 0.5) by a shape move with the top-most
    one (rigid motion: translation, spin, scale); the background does not move."""
    p = scene.poses
    xs, ys = _grid(scene)
    u, v, _ = _local(scene, xs, ys)  # [B, P, F, H, W]
    k = p.scale[..., 1:, None, None]
    c, s = torch.cos(p.angle[..., 1:])[..., None, None], torch.sin(p.angle[..., 1:])[..., None, None]
    u, v = u[:, :, :-1], v[:, :, :-1]
    nx = p.cx[..., 1:, None, None] + k * (c * u - s * v) - xs
    ny = p.cy[..., 1:, None, None] + k * (s * u + c * v) - ys
    shape_flow = torch.stack([nx, ny], dim=-1)  # [B, P, F-1, H, W, 2]
    covered = coverage(scene)[:, :, :-1] > 0.5
    out = torch.zeros(shape_flow.shape[0], *shape_flow.shape[2:], device=p.cx.device)
    for index in range(shape_flow.shape[1]):  # later shapes are drawn on top
        out = torch.where(covered[:, index, ..., None], shape_flow[:, index], out)
    return out


def translation(appearance: Appearance, velocity: tuple[float, float], frames: int = 8, size: int = BASE_SIDE,
                angle: float = 0.0) -> Scene:
    """One clip (``appearance`` with batch 1, first shape) translating at ``velocity`` px/frame on a path
    centred in the frame."""
    t = torch.arange(frames, dtype=torch.float32) - (frames - 1) / 2
    centre = (size - 1) / 2 + t[:, None] * torch.tensor(velocity, dtype=torch.float32)  # [F, 2]
    poses = Poses(centre[None, None, :, 0].expand(1, 2, frames).clone(),
                  centre[None, None, :, 1].expand(1, 2, frames).clone(),
                  torch.full((1, 2, frames), angle), torch.ones(1, 2, frames), ("translate",))
    scene = Scene(appearance, poses, size, size)
    inside = reach(appearance, poses.scale)[0, 0] <= torch.minimum(centre, size - 1 - centre).amin(dim=1)
    if not bool(inside.all()):
        raise SMAInputError(f"a shape moving at {velocity} px/frame leaves the {size} x {size} frame within {frames} "
                            "frames; lower the speed or the frame count.")
    return scene
