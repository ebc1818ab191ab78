"""sma.loss: paper mode against an independent numpy + PyWavelets evaluation of the reference formulas,
plus-mode properties, precision, Tweedie estimate, errors."""
from __future__ import annotations

import math

import numpy as np
import pytest
import pywt
import torch

from sma.errors import SMAInputError
from sma.loss import (
    SMAConfig,
    SMALoss,
    default_levels,
    motion_vectors,
    phase_distance,
    timestep_weight,
    tweedie_estimate,
)


# ----------------------------------------------------------------------------------------------
# Paper mode == the reference formulas, evaluated with numpy + PyWavelets only
# ----------------------------------------------------------------------------------------------


def _reference_weight(h: int, w: int, delta: float, base: float) -> np.ndarray:
    rows, cols = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    radius_sq = (rows - h / 2) ** 2 + (cols - w / 2) ** 2
    return ((h / 2) ** 2 + (w / 2) ** 2) ** delta - radius_sq**delta + base


def _reference_paper_loss(pred, target, levels, level_weights, lambda_global, lambda_local, delta=0.05, base=1.0):
    """The reference's sma_global + sma_local on [B, F, C, H, W] numpy arrays (|dz|, Haar/zero, raw FFT)."""
    b, f, c, h, w = pred.shape
    d_pred = np.abs(np.diff(pred, axis=1))
    d_target = np.abs(np.diff(target, axis=1))
    # global: one signal per (c, h, w), L1 per band; bands ordered approx, finest detail, ..., coarsest
    signals = lambda d: d.transpose(0, 2, 3, 4, 1).reshape(b, c * h * w, f - 1)  # noqa: E731
    cp = pywt.wavedec(signals(d_pred), "haar", mode="zero", level=levels, axis=-1)
    ct = pywt.wavedec(signals(d_target), "haar", mode="zero", level=levels, axis=-1)
    bands = [np.abs(cp[0] - ct[0]).mean()] + [np.abs(cp[-j] - ct[-j]).mean() for j in range(1, levels + 1)]
    global_ = sum(wj * band for wj, band in zip(level_weights, bands))
    # local: unnormalised, centred FFT of each frame residual
    sp = np.fft.fftshift(np.fft.fft2(d_pred, axes=(-2, -1)), axes=(-2, -1))
    st = np.fft.fftshift(np.fft.fft2(d_target, axes=(-2, -1)), axes=(-2, -1))
    weight = _reference_weight(h, w, delta, base)
    amplitude = np.mean(np.abs(np.abs(sp) - np.abs(st)) * weight)
    phase = np.mean(np.abs(np.angle(sp) - np.angle(st)) * weight)
    total = lambda_global * global_ + lambda_local * (amplitude + phase)
    return dict(total=total, global_=global_, bands=bands, amplitude=amplitude, phase=phase)


# Odd H and W: a real frame's spectrum then has one real-valued bin only (DC, positive for |dz|).
# With even sizes the Nyquist bins are real too, and their imaginary part is a rounding-level +-0 whose
# sign decides whether angle() says +pi or -pi: two FFT libraries may disagree by 2*pi there.
@pytest.mark.parametrize(
    "shape, levels, level_weights, lambdas",
    [
        ((2, 8, 4, 9, 11), None, None, (0.4, 0.2)),  # reference defaults: 2 levels for 8 frames
        ((1, 16, 3, 7, 9), None, (1.0, 0.5, 2.0, 0.25), (1.0, 1.0)),  # 3 levels for 16, uneven weights
        ((2, 12, 2, 5, 5), 2, (0.3, 1.0, 0.7), (0.08, 0.53)),
    ],
)
def test_paper_mode_equals_reference_formulas(shape, levels, level_weights, lambdas):
    rng = np.random.default_rng(sum(shape))
    pred, target = rng.standard_normal(shape), rng.standard_normal(shape)
    config = SMAConfig(sma_mode="paper", lambda_global=lambdas[0], lambda_local=lambdas[1], wavelet_levels=levels,
                       level_weights=level_weights)
    out = SMALoss(config)(torch.from_numpy(pred), torch.from_numpy(target))
    n_levels = levels if levels is not None else {8: 2, 16: 3}[shape[1]]
    weights = level_weights if level_weights is not None else (1.0,) * (n_levels + 1)
    ref = _reference_paper_loss(pred, target, n_levels, weights, *lambdas)
    assert len(out.global_bands) == n_levels + 1
    np.testing.assert_allclose([b.item() for b in out.global_bands], ref["bands"], rtol=1e-10)
    np.testing.assert_allclose(out.global_.item(), ref["global_"], rtol=1e-10)
    np.testing.assert_allclose(out.local_amplitude.item(), ref["amplitude"], rtol=1e-10)
    np.testing.assert_allclose(out.local_phase.item(), ref["phase"], rtol=1e-10)
    np.testing.assert_allclose(out.total.item(), ref["total"], rtol=1e-10)


def test_paper_mode_float32_close_to_reference():
    rng = np.random.default_rng(11)
    pred, target = rng.standard_normal((1, 8, 4, 9, 9)), rng.standard_normal((1, 8, 4, 9, 9))
    out = SMALoss(SMAConfig(sma_mode="paper"))(torch.from_numpy(pred).float(), torch.from_numpy(target).float())
    assert out.total.dtype == torch.float32
    ref = _reference_paper_loss(pred, target, 2, (1.0, 1.0, 1.0), 0.4, 0.2)
    np.testing.assert_allclose(out.total.item(), ref["total"], rtol=1e-4)


# ----------------------------------------------------------------------------------------------
# Plus mode: what it fixes
# ----------------------------------------------------------------------------------------------


def test_phase_distance_ignores_whole_turns():
    phase = torch.linspace(-math.pi, math.pi, 101, dtype=torch.float64)
    for turns in (1, -1, 3):
        shifted = phase + 2 * math.pi * turns
        assert phase_distance(shifted, phase, "wrap").abs().max().item() < 1e-12
        raw = phase_distance(shifted, phase, "raw")
        torch.testing.assert_close(raw, torch.full_like(phase, 2 * math.pi * abs(turns)))
    # across the +-pi cut: a true difference of 2 * eps reads 2 * pi - 2 * eps raw
    eps = 1e-3
    hat, ref = torch.tensor([math.pi - eps], dtype=torch.float64), torch.tensor([-math.pi + eps], dtype=torch.float64)
    assert phase_distance(hat, ref, "wrap").item() == pytest.approx(1 - math.cos(2 * eps), rel=1e-6)
    assert phase_distance(hat, ref, "raw").item() == pytest.approx(2 * math.pi - 2 * eps)
    # the wrap distance still sees real phase errors
    assert phase_distance(torch.tensor([math.pi / 2]), torch.tensor([0.0]), "wrap").item() == pytest.approx(1.0)


def _clip_from_residual(d: np.ndarray) -> torch.Tensor:
    """A 3-frame clip [0, d, d] ([1, 3, 1, H, W]) whose motion vectors are [d, 0]."""
    return torch.from_numpy(np.stack([np.zeros_like(d), d, d])[None, :, None])


def test_plus_loss_ignores_phase_wrap_across_pi():
    """One conjugate pair of bins sits just below +pi in the target and just above -pi in the
    prediction: the true phase change is 2 * eps; raw |dphi| reads 2 * pi - 2 * eps for both bins."""
    size, eps, k = 9, 1e-3, (1, 2)
    rng = np.random.default_rng(12)
    spectrum = np.fft.fft2(rng.standard_normal((size, size)))
    minus_k = (-k[0] % size, -k[1] % size)

    def residual(phase: float) -> np.ndarray:
        s = spectrum.copy()
        s[k] = 3.0 * np.exp(1j * phase)
        s[minus_k] = np.conj(s[k])  # keep the frame real
        return np.fft.ifft2(s).real

    target = _clip_from_residual(residual(math.pi - eps))
    pred = _clip_from_residual(residual(-math.pi + eps))
    common = dict(lambda_global=0.0, weight_delta=0.05, weight_base=1.0)
    wrap = SMALoss(SMAConfig(sma_mode="plus", phase_loss="wrap", **common))(pred, target)
    raw = SMALoss(SMAConfig(sma_mode="plus", phase_loss="raw", **common))(pred, target)

    # expected raw value: the normalised weight at the two bins (after fftshift), over all bins
    weight = _reference_weight(size, size, 0.05, 1.0)
    weight /= weight.mean()
    marker = np.zeros((size, size))
    marker[k] = marker[minus_k] = 1
    at_bins = (weight * np.fft.fftshift(marker)).sum()
    n_bins = 2 * size * size  # 2 motion vectors, the second one is all zeros
    assert raw.local_phase.item() == pytest.approx(at_bins * (2 * math.pi - 2 * eps) / n_bins, rel=1e-6)
    assert wrap.local_phase.item() == pytest.approx(at_bins * (1 - math.cos(2 * eps)) / n_bins, rel=1e-3, abs=1e-12)
    assert wrap.local_phase.item() < 1e-6 < 0.05 < raw.local_phase.item()
    assert wrap.local_amplitude.item() < 1e-12  # amplitudes are untouched


@pytest.mark.parametrize("frames", [4, 9])
def test_reversed_motion_costs_in_plus_not_in_paper(frames):
    """Constant velocity z[f] = base + f * v played backwards has motion vectors -v instead of v.
    Paper mode compares |dz| and cannot tell; plus mode keeps the sign. Integer values keep all
    arithmetic exact, so paper mode gives exactly 0."""
    gen = torch.Generator().manual_seed(frames)
    base = torch.randint(-4, 5, (1, 1, 3, 7, 7), generator=gen).double()
    velocity = torch.randint(-3, 4, (1, 1, 3, 7, 7), generator=gen).double()
    clip = base + torch.arange(frames, dtype=torch.float64).reshape(1, -1, 1, 1, 1) * velocity
    backwards = clip.flip(1)
    paper = SMALoss(SMAConfig(sma_mode="paper", wavelet_levels=1))(backwards, clip)
    plus = SMALoss(SMAConfig(sma_mode="plus", wavelet_levels=1))(backwards, clip)
    assert paper.total.item() == 0.0
    assert plus.global_.item() > 0.5 and plus.local.item() > 0.5
    # and playing it forwards costs nothing in either mode
    assert SMALoss(SMAConfig(sma_mode="plus", wavelet_levels=1))(clip, clip).total.item() == 0.0


def test_plus_local_loss_does_not_grow_with_resolution():
    """What ortho scaling makes resolution-free. Nearest upsampling is *not* an exact invariance of an
    L1 amplitude loss: it keeps the mean |S|^2 per bin (Parseval, see test_spectral) but maps each
    bin to four aliased bins with gains 2|cos||cos|, so mean |dA| changes. What holds is the claim
    that matters for lambda_local: for white-noise motion (every pixel independent, same variance),
    each ortho bin has the same amplitude distribution at any H x W, so the plus terms stay put as the
    latent grows, while the unnormalised reference grows like sqrt(H * W)."""
    gen = torch.Generator().manual_seed(13)
    plus = SMALoss(SMAConfig(sma_mode="plus", lambda_global=0.0))
    paper = SMALoss(SMAConfig(sma_mode="paper", lambda_global=0.0))
    values = {}
    for size in (16, 32, 64):
        n = 65536 // (size * size)  # the same number of bins at every size
        pred = torch.randn(n, 3, 4, size, size, generator=gen)
        target = torch.randn(n, 3, 4, size, size, generator=gen)
        values[size] = (plus(pred, target), paper(pred, target))
    for size in (32, 64):
        assert values[size][0].local_amplitude.item() == pytest.approx(values[16][0].local_amplitude.item(), rel=0.03)
        assert values[size][0].local_phase.item() == pytest.approx(values[16][0].local_phase.item(), rel=0.03)
        growth = values[size][1].local_amplitude.item() / values[size // 2][1].local_amplitude.item()
        assert growth > 1.8  # about 2 per doubling of the side


def test_plus_weight_is_normalised_with_sharpness():
    """With identical amplitude errors everywhere, the weighted mean equals the weight's mean: 1."""
    size = 8
    target = torch.zeros(1, 2, 1, size, size, dtype=torch.float64)
    pred = target.clone()
    pred[0, 1, 0, 0, 0] = 1.0  # one impulse: flat amplitude spectrum 1/size (ortho) in every bin
    for sharpness in (0.0, 1.0, 4.0):
        out = SMALoss(SMAConfig(lambda_global=0.0, weight_sharpness=sharpness))(pred, target)
        assert out.local_amplitude.item() == pytest.approx(1 / size, rel=1e-10)


def test_timestep_weight_formula_and_use():
    a = torch.tensor([0.5, 0.9, 0.99, 1.0], dtype=torch.float64)
    snr = a / (1 - a)
    expected = [math.sqrt(1 / 5), math.sqrt(9 / 5), 1.0, 1.0]
    expected[1] = min(1.0, expected[1])
    torch.testing.assert_close(timestep_weight(a, 5.0), torch.tensor(expected, dtype=torch.float64))
    assert snr[0].item() == pytest.approx(1.0)

    gen = torch.Generator().manual_seed(14)
    pred = torch.randn(2, 8, 2, 6, 6, generator=gen, dtype=torch.float64)
    target = torch.randn(2, 8, 2, 6, 6, generator=gen, dtype=torch.float64)
    alphas = torch.tensor([0.05, 0.97], dtype=torch.float64)
    loss = SMALoss(SMAConfig(snr_gamma=5.0))
    weighted = loss(pred, target, alphas)
    per_sample = torch.stack([loss(pred[i : i + 1], target[i : i + 1]).total for i in range(2)])
    w = torch.tensor([math.sqrt(0.05 / 0.95 / 5.0), 1.0], dtype=torch.float64)
    torch.testing.assert_close(weighted.timestep_weight, w)
    torch.testing.assert_close(weighted.total, (w * per_sample).mean())
    # paper mode and snr_gamma=None ignore the timesteps
    torch.testing.assert_close(SMALoss(SMAConfig(snr_gamma=None))(pred, target, alphas).total, per_sample.mean())
    paper = SMALoss(SMAConfig(sma_mode="paper"))
    torch.testing.assert_close(paper(pred, target, alphas).total, paper(pred, target).total)


# ----------------------------------------------------------------------------------------------
# Both modes
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["paper", "plus"])
def test_zero_when_prediction_equals_target(mode):
    z = torch.randn(2, 16, 4, 8, 8)
    out = SMALoss(SMAConfig(sma_mode=mode))(z, z.clone(), torch.tensor([0.3, 0.8]))
    for value in (out.total, out.global_, out.local, out.local_amplitude, out.local_phase, *out.global_bands):
        assert value.item() == 0.0
    assert len(out.global_bands) == 4  # 16 frames -> 3 levels


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("mode", ["paper", "plus"])
def test_half_precision_inputs_get_finite_gradients(mode, dtype):
    gen = torch.Generator().manual_seed(15)
    pred = torch.randn(1, 8, 4, 16, 16, generator=gen).to(dtype).requires_grad_()
    target = torch.randn(1, 8, 4, 16, 16, generator=gen).to(dtype)
    out = SMALoss(SMAConfig(sma_mode=mode))(pred, target, torch.tensor([0.4]))
    assert out.total.dtype == torch.float32 and torch.isfinite(out.total)
    out.total.backward()
    assert pred.grad.dtype == dtype
    assert torch.isfinite(pred.grad).all()
    assert pred.grad.float().abs().sum().item() > 0


def test_gradients_reach_the_prediction_float64():
    pred = torch.randn(1, 5, 2, 6, 6, dtype=torch.float64, requires_grad=True)
    target = torch.randn(1, 5, 2, 6, 6, dtype=torch.float64)
    loss = SMALoss(SMAConfig(sma_mode="plus", phase_loss="wrap"))
    assert torch.autograd.gradcheck(lambda p: loss(p, target, torch.tensor([0.5])).total, (pred,))


def test_motion_vectors():
    z = torch.randn(2, 5, 3, 4, 4)
    d = motion_vectors(z)
    assert d.shape == (2, 4, 3, 4, 4)
    torch.testing.assert_close(d[:, 2], z[:, 3] - z[:, 2])


def test_default_levels_follow_reference_readme():
    assert default_levels(8) == 2 and default_levels(16) == 3  # README: 2 for 8 frames, 3 for 16
    assert default_levels(3) == 1 and default_levels(32) == 4
    assert default_levels(16, "db2") == 2


# ----------------------------------------------------------------------------------------------
# Tweedie estimate
# ----------------------------------------------------------------------------------------------


def test_tweedie_recovers_z0_from_true_noise():
    gen = torch.Generator().manual_seed(16)
    z0 = torch.randn(3, 4, 2, 5, 5, generator=gen, dtype=torch.float64)
    eps = torch.randn(3, 4, 2, 5, 5, generator=gen, dtype=torch.float64)
    a = torch.tensor([0.999, 0.5, 0.0047], dtype=torch.float64)
    ab = a.reshape(-1, 1, 1, 1, 1)
    x_t = ab.sqrt() * z0 + (1 - ab).sqrt() * eps
    torch.testing.assert_close(tweedie_estimate(x_t, eps, a, "epsilon"), z0, rtol=1e-10, atol=1e-10)
    v = ab.sqrt() * eps - (1 - ab).sqrt() * z0
    torch.testing.assert_close(tweedie_estimate(x_t, v, a, "v_prediction"), z0, rtol=1e-10, atol=1e-10)
    # a scalar abar broadcasts; fp16 inputs come back in float32
    x1 = 0.5**0.5 * z0 + 0.5**0.5 * eps
    torch.testing.assert_close(tweedie_estimate(x1, eps, torch.tensor(0.5, dtype=torch.float64)), z0)
    assert tweedie_estimate(x1.half(), eps.half(), a.float()).dtype == torch.float32


# ----------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------

_Z = torch.zeros(1, 8, 4, 8, 8)


def _nan_copy(z: torch.Tensor, value: float) -> torch.Tensor:
    z = z.clone()
    z[0, 1, 0, 0, 0] = value
    return z


@pytest.mark.parametrize(
    "call, fragments",
    [
        (lambda: SMALoss()(_Z[:, :1], _Z[:, :1]), ["1 frame", "at least 2 frames"]),
        (lambda: SMALoss()(_Z, _Z[:, :, :3]), ["(1, 8, 4, 8, 8)", "(1, 8, 3, 8, 8)", "must match"]),
        (lambda: SMALoss()(_Z[0], _Z[0]), ["5-D", "[B, F, C, H, W]", "(8, 4, 8, 8)"]),
        (lambda: SMALoss(SMAConfig(wavelet_levels=3))(_Z, _Z), ["3 level", "at least 9 frames", "8", "at most 2"]),
        (lambda: SMALoss()(_Z[:, :2], _Z[:, :2]), ["at least 3 frames", "lambda_global"]),
        (lambda: SMALoss(SMAConfig(level_weights=(1.0, 1.0)))(_Z, _Z), ["level_weights has 2", "need 3"]),
        (lambda: SMALoss()(_nan_copy(_Z, float("nan")), _Z), ["pred_z0", "NaN or inf"]),
        (lambda: SMALoss()(_Z, _nan_copy(_Z, float("inf"))), ["target_z0", "NaN or inf"]),
        (lambda: SMALoss()(_Z, _Z, torch.tensor([1.5])), ["alphas_cumprod_t", "(0, 1]"]),
        (lambda: SMALoss()(_Z, _Z, torch.tensor([0.5, 0.5, 0.5])), ["[B] = [1]", "(3,)"]),
        (lambda: SMAConfig(sma_mode="fancy"), ["'fancy'", "paper", "plus", "off"]),
        (lambda: SMALoss(SMAConfig(sma_mode="off")), ["sma_mode", "off"]),
        (lambda: SMAConfig(lambda_global=-1.0), ["lambda_global", ">= 0"]),
        (lambda: SMAConfig(wavelet_levels=0), ["wavelet_levels", ">= 1"]),
        (lambda: SMAConfig(wavelet_levels=2, level_weights=(1.0,)), ["wavelet_levels + 1 = 3", "got 1"]),
        (lambda: SMAConfig(wavelet="gaus1"), ["'gaus1'", "pywt.wavelist"]),
        (lambda: SMAConfig(wavelet_mode="smooth"), ["'smooth'", "periodization"]),
        (lambda: SMAConfig(weight_delta=0.0), ["weight_delta", "> 0"]),
        (lambda: SMAConfig(snr_gamma=0.0), ["snr_gamma", "> 0"]),
        (lambda: SMAConfig(phase_loss="cos"), ["'cos'", "wrap", "raw"]),
        (lambda: tweedie_estimate(_Z, _Z, torch.tensor([0.5]), "sample"), ["'sample'", "epsilon", "v_prediction"]),
        (lambda: tweedie_estimate(_Z, _Z[:, :2], torch.tensor([0.5])), ["(1, 8, 4, 8, 8)", "(1, 2, 4, 8, 8)"]),
        (lambda: tweedie_estimate(_Z, _Z, torch.tensor([0.0])), ["(0, 1]"]),
        (lambda: motion_vectors(torch.zeros(2, 3, 4)), ["5-D"]),
    ],
)
def test_bad_input_raises_helpful_errors(call, fragments):
    with pytest.raises(SMAInputError) as info:
        call()
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))


def test_lambda_global_zero_allows_two_frames():
    z, p = torch.zeros(1, 2, 1, 4, 4), torch.ones(1, 2, 1, 4, 4)
    p[:, 1] = 2.0
    out = SMALoss(SMAConfig(lambda_global=0.0))(p, z)
    assert out.global_bands == () and out.global_.item() == 0.0
    assert out.local.item() > 0
