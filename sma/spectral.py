"""Differentiable spectral transforms: 1-D multi-level DWT along time, centred 2-D FFT, frequency weights.

All functions are pure, batched and differentiable, and keep the device of their input.

DWT (`wavedec` / `waverec`) matches PyWavelets (`pywt.wavedec` / `pywt.waverec`) for every discrete
wavelet PyWavelets knows and the modes ``zero``, ``symmetric``, ``reflect`` and ``periodization``.
Filter banks come from ``pywt.Wavelet(name).filter_bank``; the boundary (padding) rules are implemented
here. The operators are built once per (wavelet, mode, length, level, device, dtype) and cached:

- signals up to ``MATRIX_MAX_LENGTH`` samples (SMA's time axis: frames - 1): the whole multi-level
  analysis (or synthesis) is one precomputed dense matrix, applied with a single matmul;
- longer signals: one strided ``conv1d`` (``conv_transpose1d``) per level, whose cost grows linearly
  with the length instead of quadratically.

Precision: float32 computes in float32, float64 in float64; float16 / bfloat16 inputs are computed in
float32 and the results cast back to the input dtype (the FFT returns complex64 for them).
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Sequence

import numpy as np
import pywt
import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import SMAInputError

MODES = ("zero", "symmetric", "reflect", "periodization")
"""Boundary modes, same names and results as in PyWavelets."""

MATRIX_MAX_LENGTH = 512
"""Longest signal transformed by one dense matrix; longer ones use per-level convolutions.
On CPU the matrix is ~20x faster than ptwt at 15 samples and breaks even with convolutions near
1000 samples (same number of elements); 512 keeps each cached matrix around 1 MB."""

_DISCRETE_WAVELETS = frozenset(pywt.wavelist(kind="discrete"))
_HALF_DTYPES = (torch.float16, torch.bfloat16)
_CACHE_SIZE = 128


# ----------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------


def check_wavelet(wavelet: str) -> str:
    """Return ``wavelet`` if PyWavelets knows it as a discrete wavelet, else raise SMAInputError."""
    if not isinstance(wavelet, str) or wavelet not in _DISCRETE_WAVELETS:
        raise SMAInputError(
            f"unknown wavelet {wavelet!r}: use a discrete PyWavelets wavelet such as 'haar', 'db2', "
            "'db4', 'sym4', 'coif1' or 'bior2.2' (full list: pywt.wavelist(kind='discrete'))"
        )
    return wavelet


def check_mode(mode: str) -> str:
    """Return ``mode`` if it is one of `MODES`, else raise SMAInputError."""
    if mode not in MODES:
        raise SMAInputError(f"unknown wavelet mode {mode!r}: allowed modes are {', '.join(MODES)}")
    return mode


def compute_dtype(x: Tensor, name: str = "x") -> torch.dtype:
    """The dtype the transforms compute in for real tensor ``x``: float32 for fp16 / bf16 / float32,
    float64 for float64. Raises SMAInputError (naming ``name``) for non-tensors and non-float dtypes."""
    if not isinstance(x, Tensor):
        raise SMAInputError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.dtype.is_floating_point:
        raise SMAInputError(f"{name} must be a real floating-point tensor, got dtype {x.dtype}")
    return torch.float32 if x.dtype in _HALF_DTYPES else x.dtype


@functools.lru_cache(maxsize=None)
def filter_length(wavelet: str) -> int:
    """Length of the wavelet's decomposition filters (``pywt.Wavelet(wavelet).dec_len``)."""
    return pywt.Wavelet(check_wavelet(wavelet)).dec_len


def dwt_max_level(length: int, wavelet: str) -> int:
    """Deepest useful DWT level for a signal of ``length`` samples (same as ``pywt.dwt_max_level``).

    It is the largest ``j`` with ``(filter_len - 1) * 2**j <= length``, or 0 if there is none.
    """
    check_wavelet(wavelet)
    if isinstance(length, bool) or not isinstance(length, numbers.Integral) or length < 1:
        raise SMAInputError(f"signal length must be a positive integer, got {length!r}")
    return max(0, (int(length) // (filter_length(wavelet) - 1)).bit_length() - 1)


def _resolve_level(length: int, wavelet: str, level: int | None) -> int:
    if length < 2:
        raise SMAInputError(f"the DWT needs a signal of at least 2 samples, got length {length}")
    max_level = dwt_max_level(length, wavelet)
    if max_level < 1:
        need = 2 * (filter_length(wavelet) - 1)
        raise SMAInputError(
            f"a signal of {length} samples is too short for wavelet {wavelet!r}: one DWT level needs "
            f"at least {need} samples (use a shorter wavelet such as 'haar', or a longer signal)"
        )
    if level is None:
        return max_level
    if isinstance(level, bool) or not isinstance(level, numbers.Integral) or not 1 <= level <= max_level:
        raise SMAInputError(
            f"DWT level {level!r} is not allowed for {length} samples with wavelet {wavelet!r}: "
            f"use an integer from 1 to {max_level} (pywt.dwt_max_level), or None for {max_level}"
        )
    return int(level)


# ----------------------------------------------------------------------------------------------
# One DWT level as index rules and matrices (numpy, float64)
# ----------------------------------------------------------------------------------------------


def _coeff_len(n: int, filter_len: int, mode: str) -> int:
    """Length of cA / cD after one level on ``n`` samples (``pywt.dwt_coeff_len``)."""
    return (n + 1) // 2 if mode == "periodization" else (n + filter_len - 1) // 2


def _extension_index(n: int, filter_len: int, mode: str) -> np.ndarray:
    """Where each sample of the boundary-extended signal comes from, for one analysis level.

    Output ``o`` of the level is the dot product of the reversed filter with positions
    ``2*o .. 2*o + filter_len - 1`` of the extended signal; entry ``p`` of the result is the index in
    ``x[0..n-1]`` that position ``p`` copies, or -1 where it is zero (mode ``zero``).
    """
    n_out = _coeff_len(n, filter_len, mode)
    if mode == "periodization":
        # An odd signal is first made even by repeating its last sample, then wrapped around.
        pos = np.arange(2 * (n_out - 1) + filter_len) - (filter_len // 2 - 1)
        return np.minimum(pos % (n + n % 2), n - 1)
    pos = np.arange(2 * (n_out - 1) + filter_len) - (filter_len - 2)
    if mode == "zero":
        return np.where((pos >= 0) & (pos < n), pos, -1)
    if mode == "symmetric":  # half-sample symmetric: x[-1] = x[0]
        p = pos % (2 * n)
        return np.where(p < n, p, 2 * n - 1 - p)
    p = pos % (2 * n - 2)  # reflect, whole-sample symmetric: x[-1] = x[1]
    return np.where(p < n, p, 2 * n - 2 - p)


def _analysis_level(n: int, dec: np.ndarray, mode: str) -> np.ndarray:
    """One analysis filter + downsampling as a matrix ``[n_out, n]``."""
    filter_len = len(dec)
    idx = _extension_index(n, filter_len, mode)
    n_out = _coeff_len(n, filter_len, mode)
    rows = np.repeat(np.arange(n_out), filter_len)
    cols = idx[(2 * np.arange(n_out)[:, None] + np.arange(filter_len)).ravel()]
    vals = np.tile(dec[::-1], n_out)
    keep = cols >= 0
    mat = np.zeros((n_out, n))
    np.add.at(mat, (rows[keep], cols[keep]), vals[keep])
    return mat


def _rec_len(n: int, filter_len: int, mode: str) -> int:
    """Length ``pywt.idwt`` returns for coefficients of length ``n``."""
    return 2 * n if mode == "periodization" else 2 * n - filter_len + 2


def _synthesis_level(n: int, rec: np.ndarray, mode: str) -> np.ndarray:
    """One upsampling + synthesis filter as a matrix ``[rec_len, n]``.

    The full transposed convolution puts ``c[o] * rec[j]`` at position ``2*o + j``; ``periodization``
    wraps that around modulo ``2n`` after a shift of ``filter_len/2 - 1``, the other modes keep the
    ``2n - filter_len + 2`` samples starting at ``filter_len - 2`` (PyWavelets' 'valid' part).
    """
    filter_len = len(rec)
    n_rec = _rec_len(n, filter_len, mode)
    pos = 2 * np.arange(n)[:, None] + np.arange(filter_len)  # [n, L]
    if mode == "periodization":
        pos = (pos - (filter_len // 2 - 1)) % n_rec
    else:
        pos = pos - (filter_len - 2)
    cols = np.repeat(np.arange(n), filter_len)
    vals = np.tile(rec, n)
    pos = pos.ravel()
    keep = (pos >= 0) & (pos < n_rec)
    mat = np.zeros((n_rec, n))
    np.add.at(mat, (pos[keep], cols[keep]), vals[keep])
    return mat


# ----------------------------------------------------------------------------------------------
# Cached operators
# ----------------------------------------------------------------------------------------------


def _filter_bank(wavelet: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``dec_lo, dec_hi, rec_lo, rec_hi`` of a PyWavelets wavelet, as float64 arrays."""
    return tuple(np.asarray(f, dtype=np.float64) for f in pywt.Wavelet(wavelet).filter_bank)


def _cached_tensors(builder):
    """``lru_cache`` for builders of constant tensors, built outside inference mode: a cached operator first made
    while ComfyUI runs a node (``torch.inference_mode``) must still be usable in a later training's autograd."""
    @functools.lru_cache(maxsize=_CACHE_SIZE)
    @functools.wraps(builder)
    def build(*args, **kwargs):
        with torch.inference_mode(False):
            return builder(*args, **kwargs)
    return build


@_cached_tensors
def _analysis_matrix(
    wavelet: str, mode: str, length: int, level: int, device: torch.device, dtype: torch.dtype
) -> tuple[Tensor, tuple[int, ...]]:
    """The whole ``level``-level analysis as ``(M^T [length, sum(n_j)], n_j in pywt order)``."""
    dec_lo, dec_hi, _, _ = _filter_bank(wavelet)
    approx = np.eye(length)
    details = []
    for _ in range(level):
        n = approx.shape[0]
        details.append(_analysis_level(n, dec_hi, mode) @ approx)
        approx = _analysis_level(n, dec_lo, mode) @ approx
    blocks = [approx, *details[::-1]]
    mat = np.concatenate(blocks, axis=0)
    op = torch.from_numpy(np.ascontiguousarray(mat.T)).to(device=device, dtype=dtype)
    return op, tuple(b.shape[0] for b in blocks)


@_cached_tensors
def _synthesis_matrix(
    wavelet: str, mode: str, lengths: tuple[int, ...], device: torch.device, dtype: torch.dtype
) -> Tensor:
    """The whole synthesis for coefficient lengths ``lengths`` (pywt order) as ``R^T [sum(n_j), T]``."""
    _, _, rec_lo, rec_hi = _filter_bank(wavelet)
    total = sum(lengths)
    starts = np.cumsum((0,) + lengths)
    approx = np.eye(total)[: lengths[0]]  # current approximation as a function of all coefficients
    for j, n in enumerate(lengths[1:], start=1):
        approx = approx[:n]  # pywt drops the extra sample of an odd-length reconstruction
        detail = np.eye(total)[starts[j] : starts[j] + n]
        approx = _synthesis_level(n, rec_lo, mode) @ approx + _synthesis_level(n, rec_hi, mode) @ detail
    return torch.from_numpy(np.ascontiguousarray(approx.T)).to(device=device, dtype=dtype)


@_cached_tensors
def _analysis_filters(
    wavelet: str, mode: str, n: int, device: torch.device, dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    """Convolution path, one level on ``n`` samples: gather index ``[len_ext]`` (``n`` reads a zero)
    and the reversed analysis filters ``[2, 1, L]`` (low, high)."""
    dec_lo, dec_hi, _, _ = _filter_bank(wavelet)
    index = _extension_index(n, len(dec_lo), mode)
    index = np.where(index < 0, n, index)
    filters = np.ascontiguousarray(np.stack([dec_lo[::-1], dec_hi[::-1]])[:, None, :])
    return torch.from_numpy(index).to(device), torch.from_numpy(filters).to(device=device, dtype=dtype)


@_cached_tensors
def _synthesis_filters(wavelet: str, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Convolution path: the synthesis filters ``[2, 1, L]`` (low, high)."""
    _, _, rec_lo, rec_hi = _filter_bank(wavelet)
    return torch.from_numpy(np.stack([rec_lo, rec_hi])[:, None, :]).to(device=device, dtype=dtype)


def _conv_analysis_level(x: Tensor, index: Tensor, filters: Tensor) -> tuple[Tensor, Tensor]:
    """``[B, n] -> (cA [B, n_out], cD [B, n_out])``."""
    padded = F.pad(x, (0, 1))  # the zero that mode 'zero' reads at index n
    out = F.conv1d(padded[:, index].unsqueeze(1), filters, stride=2)
    return out[:, 0], out[:, 1]


def _conv_synthesis_level(approx: Tensor, detail: Tensor, mode: str, filters: Tensor) -> Tensor:
    """``cA, cD [B, n] -> [B, rec_len]``."""
    n, filter_len = detail.shape[-1], filters.shape[-1]
    full = F.conv_transpose1d(torch.stack([approx, detail], dim=1), filters, stride=2)[:, 0]
    if mode != "periodization":
        return full[:, filter_len - 2 : filter_len - 2 + _rec_len(n, filter_len, mode)]
    period = 2 * n
    full = F.pad(full, (0, -full.shape[-1] % period))
    wrapped = full.reshape(full.shape[0], -1, period).sum(dim=1)
    return torch.roll(wrapped, -(filter_len // 2 - 1), dims=-1)


# ----------------------------------------------------------------------------------------------
# Public DWT
# ----------------------------------------------------------------------------------------------


def wavedec(x: Tensor, wavelet: str = "haar", level: int | None = None, mode: str = "symmetric") -> list[Tensor]:
    """Multi-level 1-D DWT along the last axis, like ``pywt.wavedec``.

    Args:
        x: signals ``[..., T]`` (real floating point, ``T >= 2``).
        wavelet: a name from ``pywt.wavelist(kind="discrete")``.
        level: number of levels, 1..``dwt_max_level(T, wavelet)``; None means the maximum.
        mode: one of ``zero``, ``symmetric``, ``reflect``, ``periodization``.

    Returns:
        ``[cA_J, cD_J, ..., cD_1]``, each ``[..., n_j]``, in the dtype and on the device of ``x``.
    """
    compute = compute_dtype(x, "x")
    check_wavelet(wavelet)
    check_mode(mode)
    if x.ndim < 1:
        raise SMAInputError("x must have at least one axis (the signal axis, last)")
    length = x.shape[-1]
    level = _resolve_level(length, wavelet, level)
    xc = x.to(compute)
    if length <= MATRIX_MAX_LENGTH:
        op, lengths = _analysis_matrix(wavelet, mode, length, level, x.device, compute)
        coeffs = list(torch.split(xc @ op, lengths, dim=-1))
    else:
        approx = xc.reshape(-1, length)
        details = []
        for _ in range(level):
            index, filters = _analysis_filters(wavelet, mode, approx.shape[-1], x.device, compute)
            approx, detail = _conv_analysis_level(approx, index, filters)
            details.append(detail)
        lead = x.shape[:-1]
        coeffs = [c.reshape(*lead, c.shape[-1]) for c in (approx, *details[::-1])]
    return [c.to(x.dtype) for c in coeffs]


def waverec(coeffs: Sequence[Tensor], wavelet: str = "haar", mode: str = "symmetric") -> Tensor:
    """Inverse of `wavedec`, like ``pywt.waverec``.

    Args:
        coeffs: ``[cA_J, cD_J, ..., cD_1]``, each ``[..., n_j]`` with the same leading shape.
        wavelet, mode: as in `wavedec`.

    Returns:
        ``[..., T_out]``. As in PyWavelets, an approximation one sample longer than the next detail
        band is trimmed, and for an odd original length ``T`` the result has ``T + 1`` samples whose
        first ``T`` are the signal (PyWavelets' filters all have even length).
    """
    check_wavelet(wavelet)
    check_mode(mode)
    if isinstance(coeffs, Tensor) or len(coeffs) < 2:
        raise SMAInputError("coeffs must be a sequence [cA_J, cD_J, ..., cD_1] of at least 2 tensors")
    compute = compute_dtype(coeffs[0], "coeffs[0]")
    lead = coeffs[0].shape[:-1]
    for j, c in enumerate(coeffs):
        compute_dtype(c, f"coeffs[{j}]")
        if c.shape[:-1] != lead or c.ndim < 1:
            raise SMAInputError(
                f"all coefficient tensors need the same leading shape: coeffs[0] is {tuple(coeffs[0].shape)}, "
                f"coeffs[{j}] is {tuple(c.shape)}"
            )
    lengths = tuple(int(c.shape[-1]) for c in coeffs)
    filter_len = filter_length(wavelet)
    approx = lengths[0]
    for j, n in enumerate(lengths[1:], start=1):
        if approx not in (n, n + 1):
            raise SMAInputError(
                f"coefficient lengths {list(lengths)} do not fit together: coeffs[{j}] has {n} samples but "
                f"the approximation before it has {approx} (allowed: the same, or one more)"
            )
        if _rec_len(n, filter_len, mode) < 1:
            raise SMAInputError(f"coeffs[{j}] has {n} samples, too few for wavelet {wavelet!r}")
        approx = _rec_len(n, filter_len, mode)
    dtype, device = coeffs[0].dtype, coeffs[0].device
    if max(approx, *lengths) <= MATRIX_MAX_LENGTH:
        op = _synthesis_matrix(wavelet, mode, lengths, device, compute)
        return (torch.cat([c.to(compute) for c in coeffs], dim=-1) @ op).to(dtype)
    filters = _synthesis_filters(wavelet, device, compute)
    flat = [c.to(compute).reshape(-1, c.shape[-1]) for c in coeffs]
    out = flat[0]
    for detail in flat[1:]:
        out = _conv_synthesis_level(out[:, : detail.shape[-1]], detail, mode, filters)
    return out.reshape(*lead, out.shape[-1]).to(dtype)


# ----------------------------------------------------------------------------------------------
# Fourier side
# ----------------------------------------------------------------------------------------------

_FFT_NORMS = ("backward", "ortho")


def fft2_centered(x: Tensor, norm: str = "backward") -> Tensor:
    """2-D FFT over the last two axes, zero frequency moved to the centre (``fftshift``).

    Args:
        x: ``[..., H, W]`` real (or complex) tensor.
        norm: ``"backward"`` (unnormalised, the reference) or ``"ortho"`` (energy preserving).

    Returns:
        Complex ``[..., H, W]``; zero frequency at ``(H // 2, W // 2)``. fp16 / bf16 give complex64.
    """
    if norm not in _FFT_NORMS:
        raise SMAInputError(f"unknown FFT norm {norm!r}: allowed are {', '.join(_FFT_NORMS)}")
    if not isinstance(x, Tensor) or x.ndim < 2:
        raise SMAInputError("fft2_centered needs a tensor with at least 2 axes [..., H, W]")
    if not x.is_complex():
        x = x.to(compute_dtype(x, "x"))
    return torch.fft.fftshift(torch.fft.fft2(x, norm=norm), dim=(-2, -1))


def amplitude_phase(spectrum: Tensor) -> tuple[Tensor, Tensor]:
    """Split a complex spectrum ``[...]`` into amplitude ``|S|`` and phase ``angle(S)`` in (-pi, pi]."""
    if not isinstance(spectrum, Tensor) or not spectrum.is_complex():
        raise SMAInputError("amplitude_phase needs a complex tensor (e.g. from fft2_centered)")
    return spectrum.abs(), spectrum.angle()


@_cached_tensors
def _low_frequency_weight(
    height: int, width: int, delta: float, base: float, sharpness: float, normalize: bool,
    device: torch.device, dtype: torch.dtype,
) -> Tensor:
    rows = np.arange(height, dtype=np.float64)[:, None] - height / 2
    cols = np.arange(width, dtype=np.float64)[None, :] - width / 2
    radius_sq = rows**2 + cols**2
    weight = ((height / 2) ** 2 + (width / 2) ** 2) ** delta - radius_sq**delta + base
    weight = weight**sharpness
    if normalize:
        mean = weight.mean()
        if not mean > 0:
            raise SMAInputError(f"cannot normalise a frequency weight whose mean is {mean}: use base > 0")
        weight = weight / mean
    return torch.from_numpy(weight).to(device=device, dtype=dtype)


def low_frequency_weight(
    height: int,
    width: int,
    delta: float = 0.05,
    base: float = 1.0,
    normalize: bool = False,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    sharpness: float = 1.0,
) -> Tensor:
    """SMA's low-frequency weight ``Wt [H, W]`` for a centred spectrum (see `fft2_centered`).

    ``Wt(u, v) = ((H/2)^2 + (W/2)^2)^delta - ((u - H/2)^2 + (v - W/2)^2)^delta + base``: largest
    (``R^delta + base``) at the centre ``(H/2, W/2)``, ``base`` at the corner ``(0, 0)``. Then
    ``Wt ** sharpness`` (1 keeps the paper's map, 0 makes it flat, larger values favour low
    frequencies more), and with ``normalize=True`` scaled to mean 1.

    The result is cached per arguments and shared: do not modify it in place.
    """
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SMAInputError(f"{name} must be a positive integer, got {value!r}")
    if not (np.isfinite(delta) and delta > 0):
        raise SMAInputError(f"delta must be a finite number > 0, got {delta!r}")
    if not (np.isfinite(base) and base >= 0):
        raise SMAInputError(f"base must be a finite number >= 0, got {base!r}")
    if not (np.isfinite(sharpness) and sharpness >= 0):
        raise SMAInputError(f"sharpness must be a finite number >= 0, got {sharpness!r}")
    device = torch.device(device if device is not None else "cpu")
    dtype = dtype if dtype is not None else torch.float32
    return _low_frequency_weight(
        height, width, float(delta), float(base), float(sharpness), bool(normalize), device, dtype
    )
