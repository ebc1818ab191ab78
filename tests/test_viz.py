"""Readable panels: the motion spectra against numpy / PyWavelets, panel sizes, loss curves, PNG output."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest
import pywt
import torch
from PIL import Image

from sma.errors import SMAInputError
from sma.loss import SMAConfig
from synthetic_clips import moving_shapes_clip, translating_square
from sma.viz import (
    COLUMN_WIDTH,
    LOSS_CURVE_SIZE,
    PANEL_HEIGHT,
    as_image_batch,
    loss_curve_image,
    motion_spectra,
    save_png,
    spectra_panel,
)

FRAMES = 16


@pytest.fixture(scope="module")
def clips() -> tuple[torch.Tensor, torch.Tensor]:
    """Two 16-frame 48 px IMAGE clips ``[F, H, W, 3]`` with different motions."""
    return (moving_shapes_clip(FRAMES, 48, 48, seed=0).frames,
            moving_shapes_clip(FRAMES, 48, 48, seed=1, motion="rotate").frames)


@pytest.fixture(scope="module")
def two_panel(clips) -> np.ndarray:
    return spectra_panel(*clips)


# --- the numbers behind the panel --------------------------------------------------------------------


def test_motion_spectra_match_numpy_and_pywavelets(clips):
    clip = clips[0]
    x = clip.permute(0, 3, 1, 2).double().numpy()  # [F, C, H, W]
    d = np.diff(x, axis=0)
    spectra = motion_spectra(clip)

    np.testing.assert_allclose(spectra.energy, np.abs(d).mean(axis=(1, 2, 3)), rtol=1e-5)
    spectrum = np.fft.fftshift(np.fft.fft2(d, norm="ortho"), axes=(-2, -1))
    np.testing.assert_allclose(spectra.amplitude, np.abs(spectrum).mean(axis=(0, 1)), rtol=1e-5, atol=1e-7)

    # scalogram rows: detail 1..3 then approx 3 (15 motion steps, Haar, symmetric padding)
    signals = d.reshape(FRAMES - 1, -1).T
    cA3, cD3, cD2, cD1 = pywt.wavedec(signals, "haar", mode="symmetric", level=3, axis=-1)
    assert spectra.band_names == ("detail 1 (fine)", "detail 2", "detail 3", "approx 3 (coarse)")
    for row, band, scale in ((0, cD1, 2), (1, cD2, 4), (2, cD3, 8), (3, cA3, 8)):
        magnitude = np.abs(band).mean(axis=0)
        expected = [magnitude[min(t // scale, len(magnitude) - 1)] for t in range(FRAMES - 1)]
        np.testing.assert_allclose(spectra.scalogram[row], expected, rtol=1e-5, atol=1e-8)

    # phase of the mean motion vector's spectrum, measured from the frame centre
    mean = np.fft.ifftshift(d.mean(axis=(0, 1)))
    centred = np.fft.fftshift(np.fft.fft2(mean, norm="ortho"))
    keep = np.abs(centred) >= 1e-3 * np.abs(centred).max()
    assert np.isnan(spectra.phase[~keep]).all()
    wrapped = np.angle(np.exp(1j * (spectra.phase[keep] - np.angle(centred)[keep])))  # float32 vs float64
    assert np.abs(wrapped).max() < 1e-3
    np.testing.assert_allclose(spectra.freq_x, np.fft.fftshift(np.fft.fftfreq(48)))


def test_phase_difference_of_a_shift_is_the_linear_ramp():
    """A clip shifted by s pixels has the same motion spectra but a phase ramp -2 pi f s: what the
    phase panel shows beyond the amplitude."""
    clip = translating_square(FRAMES, 32, (0.5, 0.0), side=8).frames
    shifted = torch.roll(clip, shifts=3, dims=2)  # 3 px to the right (periodic)
    a, b = motion_spectra(clip), motion_spectra(shifted)
    np.testing.assert_allclose(a.amplitude, b.amplitude, rtol=1e-5, atol=1e-7)
    keep = ~np.isnan(a.phase) & ~np.isnan(b.phase)
    ramp = -2 * np.pi * a.freq_x[None, :] * 3
    np.testing.assert_allclose(np.cos(b.phase - a.phase)[keep], np.broadcast_to(np.cos(ramp), keep.shape)[keep],
                               atol=1e-4)


def test_paper_mode_uses_absolute_motion_and_latents_work():
    latents = torch.randn(8, 4, 12, 10, generator=torch.Generator().manual_seed(0))
    spectra = motion_spectra(latents, SMAConfig(sma_mode="paper"))
    d = np.abs(np.diff(latents.double().numpy(), axis=0))
    spectrum = np.fft.fftshift(np.fft.fft2(d), axes=(-2, -1))  # paper mode: unnormalised FFT
    np.testing.assert_allclose(spectra.amplitude, np.abs(spectrum).mean(axis=(0, 1)), rtol=1e-5)
    assert spectra.scalogram.shape == (3, 7) and spectra.amplitude.shape == (12, 10)


# --- the panel ---------------------------------------------------------------------------------------


def test_panel_size_and_content(clips, two_panel):
    one = spectra_panel(clips[0])
    assert one.dtype == np.uint8 and one.shape == (PANEL_HEIGHT, COLUMN_WIDTH, 3)
    assert two_panel.dtype == np.uint8 and two_panel.shape == (PANEL_HEIGHT, 2 * COLUMN_WIDTH, 3)
    for image in (one, two_panel[:, :COLUMN_WIDTH], two_panel[:, COLUMN_WIDTH:]):
        assert image.std() > 40  # drawn plots, not a blank page
        for quarter in np.array_split(image, 4, axis=0):  # every one of the four panels has content
            assert quarter.std() > 20


def test_panel_is_deterministic(clips, two_panel):
    assert np.array_equal(spectra_panel(*clips), two_panel)


def test_shared_colour_scale_makes_a_still_clip_dark(clips):
    """Side by side, a clip with little motion shows darker (lower) colours than the moving one."""
    moving = clips[0]
    nearly_still = moving[:1] + (moving - moving[:1]) * 0.05
    panel = spectra_panel(moving, nearly_still).astype(np.float64)
    scalogram_rows = slice(int(PANEL_HEIGHT * 0.04), int(PANEL_HEIGHT * 0.15))
    left = panel[scalogram_rows, int(COLUMN_WIDTH * 0.2):int(COLUMN_WIDTH * 0.6)].mean()
    right = panel[scalogram_rows, COLUMN_WIDTH + int(COLUMN_WIDTH * 0.2):COLUMN_WIDTH + int(COLUMN_WIDTH * 0.6)].mean()
    assert right < left - 30


def test_panel_handles_different_sizes_and_static_clips():
    a = moving_shapes_clip(8, 32, 32, seed=2).frames
    latents = torch.randn(10, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    assert spectra_panel(a, latents, labels=("image", "latent")).shape == (PANEL_HEIGHT, 2 * COLUMN_WIDTH, 3)
    still = torch.full((6, 16, 16, 3), 0.5)
    assert spectra_panel(still).shape == (PANEL_HEIGHT, COLUMN_WIDTH, 3)


def test_panel_bad_inputs():
    with pytest.raises(SMAInputError, match="at least 3 frames"):
        spectra_panel(torch.zeros(2, 16, 16, 3))
    with pytest.raises(SMAInputError, match="one name per clip"):
        spectra_panel(torch.zeros(4, 16, 16, 3), torch.zeros(4, 16, 16, 3), labels=("only",))


# --- loss curves -------------------------------------------------------------------------------------


def test_loss_curve_image():
    history = [{"mse": 1.0 / step, "sma": 0.5 + 0.1 * math.sin(step), "loss": 1.0 / step + 0.5} for step in range(1, 60)]
    image = loss_curve_image(history)
    assert image.dtype == np.uint8 and image.shape == (*LOSS_CURVE_SIZE, 3)
    assert image.std() > 20
    assert np.array_equal(loss_curve_image(history), image)


def test_loss_curve_with_missing_and_non_finite_values():
    history = [{"mse": 0.5, "spatial": 0.2}, {"mse": 0.4}, {"mse": math.nan, "sma": -0.1}, {"mse": 0.3, "sma": 0.2}]
    image = loss_curve_image(history)
    assert image.shape == (*LOSS_CURVE_SIZE, 3) and image.std() > 20
    empty = loss_curve_image([])
    assert empty.shape == (*LOSS_CURVE_SIZE, 3)
    assert not np.array_equal(empty, image)


# --- output ------------------------------------------------------------------------------------------


def test_save_png_is_atomic_and_readable(tmp_path, two_panel):
    path = tmp_path / "panel.png"
    save_png(two_panel, path)
    assert np.array_equal(np.asarray(Image.open(path).convert("RGB")), two_panel)
    assert os.listdir(tmp_path) == ["panel.png"]  # no temp file left
    with pytest.raises(SMAInputError, match="uint8 RGB"):
        save_png(two_panel.astype(np.float32), path)


def test_save_png_failure_keeps_the_old_file(tmp_path, monkeypatch, two_panel):
    path = tmp_path / "panel.png"
    save_png(two_panel, path)
    before = path.read_bytes()

    def fail_half_way(self, fp, *args, **kwargs):
        with open(fp, "wb") as handle:
            handle.write(b"\x89PNG partial")
        raise OSError("simulated failure while writing")

    monkeypatch.setattr(Image.Image, "save", fail_half_way)
    with pytest.raises(OSError, match="simulated"):
        save_png(np.zeros((8, 8, 3), np.uint8), path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["panel.png"]


def test_as_image_batch(two_panel):
    batch = as_image_batch(two_panel)
    assert batch.shape == (1, *two_panel.shape) and batch.dtype == torch.float32
    assert float(batch.max()) <= 1.0 and np.array_equal((batch[0] * 255).round().to(torch.uint8).numpy(), two_panel)
