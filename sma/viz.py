"""Panels a person can read: the motion spectra SMA aligns, and training loss curves.

Everything is drawn on a private ``matplotlib.figure.Figure`` with the Agg canvas: no pyplot, no global
state, no display needed, safe in threads. Results are ``uint8`` RGB arrays ``[H, W, 3]`` of fixed size
(`spectra_panel`: ``PANEL_HEIGHT x COLUMN_WIDTH`` per clip; `loss_curve_image`: ``LOSS_CURVE_SIZE``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from .atomic import atomic_write_path
from .errors import SMAInputError
from .loss import SMAConfig, default_levels, motion_vectors
from .metrics import Layout, as_video
from .spectral import amplitude_phase, fft2_centered, wavedec

DPI = 100
COLUMN_WIDTH = 560
"""Width in pixels of one clip's column in `spectra_panel`."""
PANEL_HEIGHT = 1400
"""Height in pixels of `spectra_panel`."""
LOSS_CURVE_SIZE = (440, 720)
"""``(height, width)`` in pixels of `loss_curve_image`."""
PHASE_FLOOR = 1e-3
"""Phase is greyed out where the mean spectrum's amplitude is below this fraction of its maximum."""
PHASE_FADE_DECADES = 2.0
"""Decades of amplitude over which the phase map fades out."""
LOG_AMPLITUDE_RANGE = 6.0
"""Decades of amplitude shown below the largest one."""
_TINY = 1e-12


# ----------------------------------------------------------------------------------------------
# What is drawn
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MotionSpectra:
    """The spectra of one clip's motion vectors ``dz [F-1, C, H, W]``, as `SMALoss` sees them.

    Attributes:
        scalogram: ``[J + 1, F - 1]`` mean ``|DWT coefficient|`` over channels and pixels per band, each
            coefficient spread over the ``2**j`` motion steps it covers; rows ``detail_1`` (finest) ..
            ``detail_J``, then ``approx_J``.
        band_names: one label per scalogram row.
        amplitude: ``[H, W]`` mean ``|S|`` over frame pairs and channels of the centred 2-D spectra.
        mean_amplitude: ``[H, W]`` ``|mean spectrum|`` over frame pairs and channels (the spectrum of the
            mean motion vector).
        phase: ``[H, W]`` angle of the mean spectrum (radians) measured from the frame centre, NaN where
            ``mean_amplitude`` is below ``PHASE_FLOOR`` times its maximum (phase of nothing). The loss
            measures phase from the corner; the two differ by the same linear ramp for every clip, so
            phase differences between clips are the same either way, and centred phase wraps less.
        energy: ``[F - 1]`` mean ``|dz|`` per frame pair.
        freq_y, freq_x: ``[H]``, ``[W]`` frequencies (cycles per pixel) of the rows and columns.
    """

    scalogram: np.ndarray
    band_names: tuple[str, ...]
    amplitude: np.ndarray
    mean_amplitude: np.ndarray
    phase: np.ndarray
    energy: np.ndarray
    freq_y: np.ndarray
    freq_x: np.ndarray


def motion_spectra(video: torch.Tensor | np.ndarray, config: SMAConfig | None = None,
                   layout: Layout = "auto") -> MotionSpectra:
    """Compute the `MotionSpectra` of a clip ``[F, C, H, W]`` or ``[F, H, W, C]`` (see `metrics.as_video`).

    Uses ``config``'s wavelet, padding and levels (levels None: the deepest the clip allows) and its
    FFT normalisation (``ortho`` in plus mode); in paper mode the motion vectors are ``|dz|``, as there.
    """
    cfg = config if config is not None else SMAConfig()
    x = as_video(video, layout)
    frames = x.shape[0]
    d = motion_vectors(x[None])[0]  # [F-1, C, H, W]
    if cfg.sma_mode == "paper":
        d = d.abs()
    steps = frames - 1
    levels = cfg.wavelet_levels if cfg.wavelet_levels is not None else max(default_levels(frames, cfg.wavelet), 1)
    coeffs = wavedec(d.flatten(1).T, cfg.wavelet, levels, cfg.resolved_wavelet_mode)  # [C*H*W, n_j] each
    bands = [coeffs[0], *coeffs[:0:-1]]  # approx_J, detail_1 .. detail_J
    time = np.arange(steps)
    rows = []
    for j, band in enumerate([*bands[1:], bands[0]], start=1):
        scale = 2 ** min(j, levels)
        magnitude = band.abs().mean(dim=0).numpy()
        rows.append(magnitude[np.minimum(time // scale, magnitude.shape[0] - 1)])
    names = tuple(f"detail {j}" + (" (fine)" if j == 1 else "") for j in range(1, levels + 1)) + (
        f"approx {levels} (coarse)",)

    spectrum = fft2_centered(d, "backward" if cfg.sma_mode == "paper" else "ortho")  # [F-1, C, H, W]
    amplitude, _ = amplitude_phase(spectrum)
    centred = torch.fft.ifftshift(d.mean(dim=(0, 1)), dim=(-2, -1))  # origin at pixel (H // 2, W // 2)
    mean_amplitude, mean_phase = amplitude_phase(fft2_centered(centred, "ortho"))
    phase = mean_phase.numpy().copy()
    peak = float(mean_amplitude.max())
    phase[mean_amplitude.numpy() < max(PHASE_FLOOR * peak, _TINY)] = np.nan
    height, width = x.shape[-2:]
    return MotionSpectra(
        scalogram=np.stack(rows),
        band_names=names,
        amplitude=amplitude.mean(dim=(0, 1)).numpy(),
        mean_amplitude=mean_amplitude.numpy(),
        phase=phase,
        energy=d.abs().mean(dim=(1, 2, 3)).numpy(),
        freq_y=np.fft.fftshift(np.fft.fftfreq(height)),
        freq_x=np.fft.fftshift(np.fft.fftfreq(width)),
    )


# ----------------------------------------------------------------------------------------------
# Drawing helpers
# ----------------------------------------------------------------------------------------------


def _render(fig: Figure) -> np.ndarray:
    """Draw ``fig`` with Agg and return its pixels ``[H, W, 3]`` uint8."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _new_figure(height: int, width: int) -> Figure:
    return Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")


def _limits(values: Sequence[np.ndarray]) -> tuple[float, float]:
    """``(low, high)`` over the finite entries of ``values``, widened if they are all equal."""
    finite = np.concatenate([v[np.isfinite(v)].ravel() for v in values])
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    return (low, high) if high > low else (low - 0.5, low + 0.5) if low != 0 else (0.0, 1.0)


def _freq_extent(spectra: MotionSpectra) -> tuple[float, float, float, float]:
    """imshow extent (left, right, bottom, top) with pixel centres on the frequencies."""
    def edges(f: np.ndarray) -> tuple[float, float]:
        step = f[1] - f[0] if f.size > 1 else 1.0
        return float(f[0] - step / 2), float(f[-1] + step / 2)
    return (*edges(spectra.freq_x), *edges(spectra.freq_y))


def _log_amplitude(spectra: MotionSpectra) -> np.ndarray:
    return np.log10(spectra.amplitude + _TINY)


# ----------------------------------------------------------------------------------------------
# Spectra panel
# ----------------------------------------------------------------------------------------------


def _draw_column(subfig, spectra: MotionSpectra, label: str, shape: tuple[int, ...], scales: dict,
                 other: tuple[MotionSpectra, str] | None) -> None:
    frames, channels, height, width = shape
    subfig.suptitle(f"{label}: {frames} frames, {channels} x {height} x {width}", fontsize=13, fontweight="bold")
    ax_scal, ax_amp, ax_phase, ax_energy = subfig.subplots(4, 1, height_ratios=(1.0, 1.35, 1.35, 0.8))
    steps = spectra.energy.shape[0]

    image = ax_scal.imshow(spectra.scalogram, aspect="auto", interpolation="nearest", cmap="magma",
                           vmin=0.0, vmax=scales["scalogram"], extent=(-0.5, steps - 0.5, len(spectra.band_names) - 0.5, -0.5))
    ax_scal.set_yticks(range(len(spectra.band_names)), spectra.band_names, fontsize=8)
    ax_scal.set_xlabel("frame pair (f -> f+1)")
    ax_scal.set_title("wavelet scalogram of motion (time x scale)", fontsize=10)
    subfig.colorbar(image, ax=ax_scal, label="mean |coefficient|")

    extent = _freq_extent(spectra)
    image = ax_amp.imshow(_log_amplitude(spectra), origin="lower", extent=extent, cmap="viridis",
                          vmin=scales["log_amplitude"][0], vmax=scales["log_amplitude"][1], interpolation="nearest")
    ax_amp.set_title("2-D amplitude spectrum of motion (mean over frames)", fontsize=10)
    subfig.colorbar(image, ax=ax_amp, label="log10 |S|")

    image = ax_phase.imshow(spectra.phase, origin="lower", extent=extent, cmap=_phase_cmap(),
                            vmin=-math.pi, vmax=math.pi, interpolation="nearest", alpha=_phase_alpha(spectra))
    ax_phase.set_title("phase of the mean motion spectrum (dark: little energy)", fontsize=10)
    bar = subfig.colorbar(image, ax=ax_phase, label="phase (radians)")
    bar.set_ticks([-math.pi, -math.pi / 2, 0, math.pi / 2, math.pi], labels=["-pi", "-pi/2", "0", "pi/2", "pi"])
    ax_phase.set_facecolor("black")
    for ax in (ax_amp, ax_phase):
        ax.set_xlabel("horizontal frequency (cycles / px)")
        ax.set_ylabel("vertical freq. (cycles / px)")

    ax_energy.plot(np.arange(steps), spectra.energy, marker="o", markersize=3, color="tab:blue", label=label)
    if other is not None:
        other_spectra, other_label = other
        ax_energy.plot(np.arange(other_spectra.energy.shape[0]), other_spectra.energy, linestyle="--",
                       color="0.6", label=other_label)
        ax_energy.legend(fontsize=8, loc="upper right", ncols=2)
    ax_energy.set_ylim(*scales["energy"])
    ax_energy.set_xlabel("frame pair (f -> f+1)")
    ax_energy.set_ylabel("mean |dz|")
    ax_energy.set_title("motion energy over time", fontsize=10)
    ax_energy.grid(alpha=0.3)


def _phase_alpha(spectra: MotionSpectra) -> np.ndarray:
    """Opacity ``[H, W]`` of the phase map over its black axes: 1 at the strongest frequency, fading
    over ``PHASE_FADE_DECADES`` decades of amplitude to 0.15 (so weak, noisy phases recede)."""
    level = np.log10(spectra.mean_amplitude + _TINY) - np.log10(spectra.mean_amplitude.max() + _TINY)
    return np.clip(1.0 + level / PHASE_FADE_DECADES, 0.15, 1.0)


def _phase_cmap():
    from matplotlib import colormaps

    return colormaps["hsv"].with_extremes(bad=(0.0, 0.0, 0.0, 0.0))  # NaN: transparent over the black axes


def spectra_panel(video: torch.Tensor | np.ndarray, other: torch.Tensor | np.ndarray | None = None,
                  labels: Sequence[str] = ("reference", "generated"), config: SMAConfig | None = None,
                  layout: Layout = "auto") -> np.ndarray:
    """Draw the motion spectra of one clip, or of two side by side on shared colour scales.

    Per clip, top to bottom: wavelet scalogram of the motion (bands x frame pairs), 2-D log-amplitude
    spectrum of the motion vectors (mean over frame pairs and channels), phase of their mean spectrum
    (cyclic colours, radians), motion energy ``mean |dz|`` per frame pair (the other clip dashed).

    Args:
        video, other: clips ``[F, C, H, W]`` or ``[F, H, W, C]`` (see `metrics.as_video`), F >= 3; they may
            differ in size and frame count.
        labels: column titles (the first is used alone for one clip).
        config: SMA settings (wavelet, padding, levels, mode) the spectra follow.

    Returns:
        ``uint8 [PANEL_HEIGHT, COLUMN_WIDTH * n_clips, 3]``.
    """
    clips = [as_video(video, layout, "video")]
    if other is not None:
        clips.append(as_video(other, layout, "other"))
    labels = [str(label) for label in labels]
    if len(labels) < len(clips):
        raise SMAInputError(f"labels needs one name per clip ({len(clips)}), got {len(labels)}")
    spectra = [motion_spectra(clip, config) for clip in clips]
    log_amp = [_log_amplitude(s) for s in spectra]
    amp_high = _limits(log_amp)[1]
    scales = {
        "scalogram": _limits([s.scalogram for s in spectra])[1] or 1.0,
        "log_amplitude": (max(_limits(log_amp)[0], amp_high - LOG_AMPLITUDE_RANGE), amp_high),
        "energy": (0.0, 1.3 * _limits([s.energy for s in spectra])[1]),
    }
    fig = _new_figure(PANEL_HEIGHT, COLUMN_WIDTH * len(clips))
    subfigs = fig.subfigures(1, len(clips), squeeze=False)[0]
    for i, (subfig, clip, spec) in enumerate(zip(subfigs, clips, spectra)):
        partner = (spectra[1 - i], labels[1 - i]) if len(clips) == 2 else None
        _draw_column(subfig, spec, labels[i], tuple(clip.shape), scales, partner)
    return _render(fig)


# ----------------------------------------------------------------------------------------------
# Loss curves
# ----------------------------------------------------------------------------------------------


def _running_mean(values: np.ndarray, window: int) -> np.ndarray:
    return np.convolve(values, np.ones(window) / window, mode="valid")


def loss_curve_image(history: Sequence[Mapping[str, float]], title: str = "training loss") -> np.ndarray:
    """Each loss component over the steps, as ``uint8 [*LOSS_CURVE_SIZE, 3]``.

    ``history[i]`` holds the components of step ``i + 1``; a component may be missing on some steps, and
    NaN / inf values are left out. The y axis is logarithmic when every plotted value is positive. Past
    20 points each component also gets a running mean (window: 5 % of its points) over the faint raw line.
    """
    series: dict[str, tuple[list[int], list[float]]] = {}
    for step, entry in enumerate(history, start=1):
        for name, value in entry.items():
            value = float(value)
            if math.isfinite(value):
                steps, values = series.setdefault(str(name), ([], []))
                steps.append(step)
                values.append(value)
    fig = _new_figure(*LOSS_CURVE_SIZE)
    ax = fig.subplots()
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if not series:
        ax.text(0.5, 0.5, "no loss values yet", ha="center", va="center", transform=ax.transAxes, fontsize=14)
        return _render(fig)
    positive = all(v > 0 for _, values in series.values() for v in values)
    for (name, (steps, values)), colour in zip(series.items(), _colours(len(series))):
        x, y = np.asarray(steps), np.asarray(values)
        if len(y) > 20:
            window = max(2, len(y) // 20)
            ax.plot(x, y, color=colour, alpha=0.3, linewidth=0.8)
            ax.plot(x[window - 1:], _running_mean(y, window), color=colour, linewidth=1.8, label=name)
        else:
            ax.plot(x, y, color=colour, marker="o", markersize=3, linewidth=1.5, label=name)
    if positive:
        ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=9, loc="best")
    return _render(fig)


def _colours(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


# ----------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------


def _check_rgb(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[-1] != 3:
        raise SMAInputError(f"expected a uint8 RGB image [H, W, 3], got {array.dtype} {array.shape}")
    return array


def save_png(array: np.ndarray, path: str | os.PathLike) -> None:
    """Write a ``uint8 [H, W, 3]`` image to ``path`` as PNG, atomically."""
    image = Image.fromarray(_check_rgb(array))
    with atomic_write_path(path) as tmp:
        image.save(tmp, format="PNG")


def as_image_batch(array: np.ndarray) -> torch.Tensor:
    """A ``uint8 [H, W, 3]`` image as a ComfyUI-style IMAGE batch ``[1, H, W, 3]`` float32 in 0..1."""
    return torch.from_numpy(_check_rgb(array).astype(np.float32) / 255.0)[None]
