"""sma.spectral against PyWavelets and numpy: DWT / inverse for every level, FFT, frequency weight, errors."""
from __future__ import annotations

import numpy as np
import pytest
import pywt
import torch

import sma.spectral as spectral
from sma.errors import SMAInputError
from sma.spectral import (
    amplitude_phase,
    dwt_max_level,
    fft2_centered,
    low_frequency_weight,
    wavedec,
    waverec,
)

WAVELETS = ("haar", "db2", "db4", "sym4", "coif1", "bior2.2")
MODES = ("zero", "symmetric", "reflect", "periodization")
LENGTHS = range(2, 65)


def _cases(wavelet: str):
    """Every (length, level) with length 2..64 and level 1..pywt.dwt_max_level."""
    filter_len = pywt.Wavelet(wavelet).dec_len
    for length in LENGTHS:
        for level in range(1, pywt.dwt_max_level(length, filter_len) + 1):
            yield length, level


@pytest.fixture
def conv_path(monkeypatch):
    """Route every length through the per-level convolution path instead of the dense matrix."""
    monkeypatch.setattr(spectral, "MATRIX_MAX_LENGTH", 0)


def _assert_coeffs_close(got: list[torch.Tensor], ref: list[np.ndarray], tol: float, what: str) -> None:
    assert len(got) == len(ref), what
    for j, (g, r) in enumerate(zip(got, ref)):
        assert tuple(g.shape) == r.shape, f"{what}: band {j} shape {tuple(g.shape)} != pywt {r.shape}"
        np.testing.assert_allclose(g.double().numpy(), r, rtol=tol, atol=tol, err_msg=f"{what}: band {j}")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("wavelet", WAVELETS)
def test_wavedec_matches_pywt_every_length_and_level(wavelet, mode):
    rng = np.random.default_rng(0)
    for length, level in _cases(wavelet):
        x = rng.standard_normal((2, length))
        ref = pywt.wavedec(x, wavelet, mode=mode, level=level)
        what = f"{wavelet}/{mode} T={length} level={level}"
        got64 = wavedec(torch.from_numpy(x), wavelet, level, mode)
        assert all(c.dtype == torch.float64 for c in got64)
        _assert_coeffs_close(got64, ref, 1e-10, what + " float64")
        got32 = wavedec(torch.from_numpy(x).float(), wavelet, level, mode)
        assert all(c.dtype == torch.float32 for c in got32)
        _assert_coeffs_close(got32, ref, 1e-5, what + " float32")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("wavelet", WAVELETS)
def test_waverec_matches_pywt_and_round_trips(wavelet, mode):
    rng = np.random.default_rng(1)
    for length, level in _cases(wavelet):
        x = rng.standard_normal((2, length))
        coeffs = pywt.wavedec(x, wavelet, mode=mode, level=level)
        ref = pywt.waverec(coeffs, wavelet, mode=mode)
        got = waverec([torch.from_numpy(c) for c in coeffs], wavelet, mode)
        what = f"{wavelet}/{mode} T={length} level={level}"
        assert tuple(got.shape) == ref.shape, what
        np.testing.assert_allclose(got.numpy(), ref, rtol=1e-10, atol=1e-10, err_msg=what)
        # Round trip through our own pair. Like pywt, an odd length comes back one sample longer
        # (the last level reconstructs an even number of samples); the first `length` are x.
        back = waverec(wavedec(torch.from_numpy(x), wavelet, level, mode), wavelet, mode)
        assert back.shape[-1] == length + length % 2, what
        np.testing.assert_allclose(back[..., :length].numpy(), x, rtol=1e-10, atol=1e-10, err_msg=what)


@pytest.mark.parametrize("mode", MODES)
def test_convolution_path_matches_pywt(conv_path, mode):
    rng = np.random.default_rng(2)
    for wavelet in ("haar", "db4", "bior2.2"):
        for length, level in _cases(wavelet):
            if length > 40:
                break
            x = rng.standard_normal((3, length))
            ref = pywt.wavedec(x, wavelet, mode=mode, level=level)
            got = wavedec(torch.from_numpy(x), wavelet, level, mode)
            what = f"conv {wavelet}/{mode} T={length} level={level}"
            _assert_coeffs_close(got, ref, 1e-10, what)
            rec = waverec(got, wavelet, mode)
            np.testing.assert_allclose(rec.numpy(), pywt.waverec(ref, wavelet, mode=mode), atol=1e-10, err_msg=what)


@pytest.mark.parametrize("length", [spectral.MATRIX_MAX_LENGTH + 1, 700, 1031])
def test_long_signals_match_pywt(length):
    """Beyond MATRIX_MAX_LENGTH the default path is the convolution one."""
    rng = np.random.default_rng(length)
    x = rng.standard_normal((2, length))
    for wavelet, mode in (("haar", "symmetric"), ("db4", "zero"), ("sym4", "reflect"), ("coif1", "periodization")):
        ref = pywt.wavedec(x, wavelet, mode=mode)  # maximum level
        got = wavedec(torch.from_numpy(x), wavelet, None, mode)
        _assert_coeffs_close(got, ref, 1e-10, f"{wavelet}/{mode} T={length}")
        rec = waverec(got, wavelet, mode)
        np.testing.assert_allclose(rec.numpy(), pywt.waverec(ref, wavelet, mode=mode), atol=1e-10)


def test_every_discrete_wavelet_matches_pywt():
    rng = np.random.default_rng(3)
    wavelets = pywt.wavelist(kind="discrete")
    assert len(wavelets) > 100
    for wavelet in wavelets:
        filter_len = pywt.Wavelet(wavelet).dec_len
        length = max(40, 2 * (filter_len - 1) + 1)
        x = rng.standard_normal((1, length))
        for mode in MODES:
            ref = pywt.wavedec(x, wavelet, mode=mode)
            got = wavedec(torch.from_numpy(x), wavelet, None, mode)
            _assert_coeffs_close(got, ref, 1e-9, f"{wavelet}/{mode}")
            rec = waverec(got, wavelet, mode)
            np.testing.assert_allclose(rec.numpy(), pywt.waverec(ref, wavelet, mode=mode), atol=1e-9, err_msg=wavelet)


def test_dwt_max_level_matches_pywt():
    for wavelet in pywt.wavelist(kind="discrete"):
        filter_len = pywt.Wavelet(wavelet).dec_len
        for length in range(1, 300):
            assert dwt_max_level(length, wavelet) == pywt.dwt_max_level(length, filter_len), (wavelet, length)


@pytest.mark.parametrize("mode", MODES)
def test_batched_shapes(mode):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 15))
    ref = pywt.wavedec(x, "db2", mode=mode, level=2, axis=-1)
    got = wavedec(torch.from_numpy(x), "db2", 2, mode)
    assert [tuple(c.shape[:2]) for c in got] == [(2, 3)] * 3
    _assert_coeffs_close(got, ref, 1e-10, f"batched {mode}")
    rec = waverec(got, "db2", mode)
    np.testing.assert_allclose(rec.numpy(), pywt.waverec(ref, "db2", mode=mode, axis=-1), atol=1e-10)
    # a single signal (1-D) works too
    one = wavedec(torch.from_numpy(x[0, 0]), "db2", 2, mode)
    _assert_coeffs_close(one, [c[0, 0] for c in ref], 1e-10, f"1-D {mode}")


@pytest.mark.parametrize("path", ["matrix", "conv"])
@pytest.mark.parametrize("mode", MODES)
def test_gradcheck(path, mode, monkeypatch):
    if path == "conv":
        monkeypatch.setattr(spectral, "MATRIX_MAX_LENGTH", 0)
    x = torch.randn(2, 13, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: tuple(wavedec(t, "db2", 2, mode)), (x,))
    shapes = [c.shape for c in wavedec(x.detach(), "db2", 2, mode)]
    coeffs = tuple(torch.randn(s, dtype=torch.float64, requires_grad=True) for s in shapes)
    assert torch.autograd.gradcheck(lambda *c: waverec(list(c), "db2", mode), coeffs)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_keep_their_dtype(dtype):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 15))
    xh = torch.from_numpy(x).to(dtype)
    got = wavedec(xh, "haar", 3, "symmetric")
    assert all(c.dtype == dtype for c in got)
    ref = pywt.wavedec(xh.double().numpy(), "haar", mode="symmetric", level=3)
    _assert_coeffs_close(got, ref, 2e-2, f"{dtype}")
    assert waverec(got, "haar", "symmetric").dtype == dtype


def test_fft2_centered_matches_numpy():
    rng = np.random.default_rng(6)
    for shape in [(2, 3, 8, 8), (1, 7, 10), (5, 6)]:
        x = rng.standard_normal(shape)
        ref = np.fft.fftshift(np.fft.fft2(x, axes=(-2, -1)), axes=(-2, -1))
        got = fft2_centered(torch.from_numpy(x))
        np.testing.assert_allclose(got.numpy(), ref, atol=1e-10)
        got_ortho = fft2_centered(torch.from_numpy(x), norm="ortho")
        np.testing.assert_allclose(got_ortho.numpy(), ref / np.sqrt(shape[-1] * shape[-2]), atol=1e-10)
        # zero frequency (the sum) sits at (H // 2, W // 2)
        h, w = shape[-2:]
        np.testing.assert_allclose(got[..., h // 2, w // 2].real.numpy(), x.sum(axis=(-2, -1)), atol=1e-10)
    assert fft2_centered(torch.randn(2, 4, 4, dtype=torch.float16)).dtype == torch.complex64


def test_ortho_fft_energy_is_resolution_free():
    """Parseval with norm="ortho": mean |S|^2 over bins = mean x^2 over pixels, so nearest-upsampling
    a frame 2x (same pixel statistics) keeps the mean spectral energy per bin; "backward" grows 4x."""
    x = torch.randn(3, 16, 16, dtype=torch.float64)
    up = x.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)
    energy = lambda t, norm: fft2_centered(t, norm).abs().pow(2).mean()  # noqa: E731
    torch.testing.assert_close(energy(up, "ortho"), energy(x, "ortho"))
    torch.testing.assert_close(energy(x, "ortho"), x.pow(2).mean())
    torch.testing.assert_close(energy(up, "backward") / energy(x, "backward"), torch.tensor(4.0, dtype=torch.float64))


def test_amplitude_phase_matches_numpy():
    rng = np.random.default_rng(7)
    s = rng.standard_normal((3, 5)) + 1j * rng.standard_normal((3, 5))
    amp, phase = amplitude_phase(torch.from_numpy(s))
    np.testing.assert_allclose(amp.numpy(), np.abs(s), atol=1e-12)
    np.testing.assert_allclose(phase.numpy(), np.angle(s), atol=1e-12)


def _weight_numpy(h: int, w: int, delta: float, base: float) -> np.ndarray:
    """The paper's Wt, evaluated point by point."""
    out = np.empty((h, w))
    top = ((h / 2) ** 2 + (w / 2) ** 2) ** delta
    for u in range(h):
        for v in range(w):
            out[u, v] = top - ((u - h / 2) ** 2 + (v - w / 2) ** 2) ** delta + base
    return out


@pytest.mark.parametrize("h,w,delta,base", [(64, 64, 0.05, 1.0), (9, 12, 0.3, 0.5), (1, 5, 0.05, 2.0)])
def test_low_frequency_weight_matches_formula(h, w, delta, base):
    ref = _weight_numpy(h, w, delta, base)
    got = low_frequency_weight(h, w, delta, base, dtype=torch.float64)
    assert got.shape == (h, w) and got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-12)
    np.testing.assert_allclose(got[0, 0].item(), base, atol=1e-12)  # the corner gets `base`
    normalized = low_frequency_weight(h, w, delta, base, normalize=True, dtype=torch.float64)
    np.testing.assert_allclose(normalized.numpy(), ref / ref.mean(), rtol=1e-12)
    sharp = low_frequency_weight(h, w, delta, base, normalize=True, dtype=torch.float64, sharpness=3.0)
    np.testing.assert_allclose(sharp.numpy(), ref**3 / (ref**3).mean(), rtol=1e-12)
    flat = low_frequency_weight(h, w, delta, base, normalize=True, sharpness=0.0)
    np.testing.assert_allclose(flat.numpy(), np.ones((h, w)), rtol=1e-6)


def test_low_frequency_weight_paper_range_for_64():
    """docs/sma-loss.md: for a 64x64 latent the paper map spans about 1.0 to 1.46 (centre = 2048**0.05 + 1)."""
    weight = low_frequency_weight(64, 64)
    assert weight.min().item() == pytest.approx(1.0)
    assert weight.max().item() == pytest.approx(2048**0.05 + 1.0, rel=1e-6)
    assert weight[32, 32].item() == weight.max().item()


def test_operators_are_cached():
    x = torch.randn(4, 23)
    spectral._analysis_matrix.cache_clear()
    wavedec(x, "db2", 2, "reflect")
    before = spectral._analysis_matrix.cache_info()
    wavedec(x * 2, "db2", 2, "reflect")
    after = spectral._analysis_matrix.cache_info()
    assert (after.hits, after.misses) == (before.hits + 1, before.misses)
    op1 = spectral._analysis_matrix("db2", "reflect", 23, 2, x.device, x.dtype)
    op2 = spectral._analysis_matrix("db2", "reflect", 23, 2, x.device, x.dtype)
    assert op1 is op2
    assert low_frequency_weight(16, 16) is low_frequency_weight(16, 16)
    coeffs = wavedec(x, "db2", 2, "reflect")
    waverec(coeffs, "db2", "reflect")
    hits = spectral._synthesis_matrix.cache_info().hits
    waverec(coeffs, "db2", "reflect")
    assert spectral._synthesis_matrix.cache_info().hits == hits + 1


@pytest.mark.parametrize(
    "call, fragments",
    [
        (lambda: wavedec(torch.randn(8), "nope"), ["'nope'", "haar", "pywt.wavelist(kind='discrete')"]),
        (lambda: wavedec(torch.randn(8), "morl"), ["'morl'", "discrete"]),  # continuous wavelet
        (lambda: wavedec(torch.randn(8), "haar", mode="wrap"),
         ["'wrap'", "zero", "symmetric", "reflect", "periodization"]),
        (lambda: wavedec(torch.randn(8), "haar", level=4), ["level 4", "1 to 3", "8 samples"]),
        (lambda: wavedec(torch.randn(8), "haar", level=0), ["level 0", "1 to 3"]),
        (lambda: wavedec(torch.randn(8), "haar", level=-1), ["level -1", "1 to 3"]),
        (lambda: wavedec(torch.randn(1), "haar"), ["at least 2 samples", "length 1"]),
        (lambda: wavedec(torch.randn(5), "db4"), ["5 samples", "too short", "'db4'", "at least 14"]),
        (lambda: wavedec(torch.arange(8), "haar"), ["floating-point", "torch.int64"]),
        (lambda: wavedec(np.zeros(8), "haar"), ["torch.Tensor", "ndarray"]),
        (lambda: waverec([torch.randn(3), torch.randn(5)], "haar"), ["do not fit", "[3, 5]"]),
        (lambda: waverec([torch.randn(2, 4), torch.randn(3, 4)], "haar"), ["same leading shape", "(2, 4)", "(3, 4)"]),
        (lambda: waverec([torch.randn(4)], "haar"), ["at least 2"]),
        (lambda: fft2_centered(torch.randn(4, 4), norm="forward"), ["'forward'", "backward", "ortho"]),
        (lambda: fft2_centered(torch.randn(4)), ["2 axes"]),
        (lambda: amplitude_phase(torch.randn(4)), ["complex"]),
        (lambda: low_frequency_weight(0, 4), ["height", "positive integer"]),
        (lambda: low_frequency_weight(4, 4, delta=0.0), ["delta", "> 0"]),
        (lambda: low_frequency_weight(4, 4, base=-1.0), ["base", ">= 0"]),
        (lambda: low_frequency_weight(4, 4, sharpness=float("nan")), ["sharpness"]),
        (lambda: dwt_max_level(0, "haar"), ["positive integer"]),
    ],
)
def test_bad_input_raises_helpful_errors(call, fragments):
    with pytest.raises(SMAInputError) as info:
        call()
    assert isinstance(info.value, ValueError)
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))
