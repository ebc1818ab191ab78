"""The SMA loss: motion vectors, Tweedie estimate, global (wavelet) and local (Fourier) motion alignment.

``L_sma = lambda_global * L_global + lambda_local * L_local`` on the motion vectors (frame residuals)
of the predicted clean latents ``z0_hat`` and the reference latents ``z0``, both ``[B, F, C, H, W]``.
The host method's own loss (MSE on noise, ...) is added by the trainer, not here.

Two modes (see docs/sma-loss.md):

- ``paper`` reproduces the reference code (``train_inference.py`` of
  geonyeong-park/Spectral-Motion-Alignment, functions ``sma_global`` / ``sma_local`` /
  ``w_low_freq_local``): absolute residuals ``|dz|``, Haar DWT with zero padding, unnormalised FFT,
  raw phase difference ``|phi_hat - phi|``, the raw weight map ``Wt``.
- ``plus`` keeps the structure and fixes the reference's weaknesses: signed residuals (direction
  counts), symmetric DWT padding, ``norm="ortho"`` FFT (amplitudes do not grow with ``H * W``),
  a wrap-aware phase distance ``1 - cos(dphi)``, the weight map normalised to mean 1 with an
  adjustable sharpness, and a min-SNR-style timestep weight.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from einops import rearrange
from torch import Tensor, nn

from .errors import SMAInputError
from .validation import check_choice, check_limits, check_number, setting
from .spectral import (
    amplitude_phase,
    check_mode,
    check_wavelet,
    compute_dtype,
    dwt_max_level,
    fft2_centered,
    filter_length,
    low_frequency_weight,
    wavedec,
)

LOSS_MODES = ("paper", "plus")
SMA_OFF = "off"
SMA_MODES = ("plus", "paper", SMA_OFF)
"""Modes of the ``sma_mode`` setting: the loss's own, or off (training adds no SMA term)."""
PREDICTION_TYPES = ("epsilon", "v_prediction")
PHASE_LOSSES = ("wrap", "raw")


# ----------------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------------


def _check_video(z: Tensor, name: str) -> None:
    if not isinstance(z, Tensor):
        raise SMAInputError(f"{name} must be a torch.Tensor, got {type(z).__name__}")
    if z.ndim != 5:
        raise SMAInputError(f"{name} must be 5-D [B, F, C, H, W], got shape {tuple(z.shape)}")
    if z.shape[1] < 2:
        raise SMAInputError(f"{name} has {z.shape[1]} frame(s): motion needs at least 2 frames [B, F, C, H, W]")


def motion_vectors(z: Tensor) -> Tensor:
    """Signed frame residuals ``dz[:, f] = z[:, f + 1] - z[:, f]``: ``[B, F, C, H, W] -> [B, F-1, C, H, W]``."""
    _check_video(z, "z")
    return z[:, 1:] - z[:, :-1]


def _per_sample(alphas_cumprod_t: Tensor, batch: int, ndim: int, dtype: torch.dtype) -> Tensor:
    """Check ``abar_t`` (0-d or ``[B]``, values in (0, 1]) and shape it ``[B, 1, ...]`` to broadcast."""
    a = torch.as_tensor(alphas_cumprod_t)
    if a.ndim > 1 or (a.ndim == 1 and a.shape[0] not in (1, batch)):
        raise SMAInputError(f"alphas_cumprod_t must be a scalar or have shape [B] = [{batch}], got {tuple(a.shape)}")
    if not bool(((a > 0) & (a <= 1)).all()):
        raise SMAInputError("alphas_cumprod_t must lie in (0, 1] (cumulative products of the scheduler's alphas)")
    return a.to(dtype).reshape(-1, *([1] * (ndim - 1)))


def tweedie_estimate(
    x_t: Tensor,
    model_output: Tensor,
    alphas_cumprod_t: Tensor,
    prediction_type: str = "epsilon",
) -> Tensor:
    """Clean-sample estimate ``z0_hat`` from a noisy sample and the model's prediction.

    Args:
        x_t: noisy latents ``[B, F, C, H, W]`` (any ``[B, ...]``), ``x_t = sqrt(a) z0 + sqrt(1-a) eps``.
        model_output: same shape; ``eps_hat`` (``epsilon``) or ``v_hat = sqrt(a) eps - sqrt(1-a) z0``
            (``v_prediction``).
        alphas_cumprod_t: ``abar_t`` per sample ``[B]`` (or a scalar), values in (0, 1].

    Returns:
        ``z0_hat`` with the shape of ``x_t``: ``(x_t - sqrt(1-a) eps_hat) / sqrt(a)`` or
        ``sqrt(a) x_t - sqrt(1-a) v_hat``. Computed (and returned) in float32 for fp16 / bf16 inputs.
    """
    check_choice("prediction_type", prediction_type, PREDICTION_TYPES)
    dtype = compute_dtype(x_t, "x_t")
    compute_dtype(model_output, "model_output")
    if x_t.shape != model_output.shape or x_t.ndim < 1:
        raise SMAInputError(
            f"x_t has shape {tuple(x_t.shape)} but model_output has shape {tuple(model_output.shape)}: they must match"
        )
    a = _per_sample(alphas_cumprod_t, x_t.shape[0], x_t.ndim, dtype).to(x_t.device)
    x, out = x_t.to(dtype), model_output.to(dtype)
    if prediction_type == "epsilon":
        return (x - (1 - a).sqrt() * out) / a.sqrt()
    return a.sqrt() * x - (1 - a).sqrt() * out


def phase_distance(phase_hat: Tensor, phase: Tensor, kind: str = "wrap") -> Tensor:
    """Elementwise distance between two phase maps (radians).

    ``raw``: ``|phase_hat - phase|`` (the reference; a 2*pi jump across +-pi costs 2*pi).
    ``wrap``: ``1 - cos(phase_hat - phase)`` in [0, 2]: 0 exactly when the phases agree modulo 2*pi,
    smooth, bounded, ``~ dphi^2 / 2`` for small errors.
    """
    check_choice("phase loss", kind, PHASE_LOSSES)
    diff = phase_hat - phase
    return diff.abs() if kind == "raw" else 1 - torch.cos(diff)


def timestep_weight(alphas_cumprod_t: Tensor, snr_gamma: float) -> Tensor:
    """Min-SNR-gamma weight for SMA's terms on ``z0_hat``: ``min(1, sqrt(SNR / gamma))`` per sample ``[B]``.

    ``SNR = a / (1 - a)``. An error ``e`` in the predicted noise becomes an error ``e / sqrt(SNR)`` in
    ``z0_hat``, so the absolute-value terms of SMA blow up at large ``t``. Min-SNR-gamma weights a
    squared ``z0`` error by ``min(SNR, gamma)``; for absolute errors the same idea is the square root,
    scaled by ``1 / sqrt(gamma)`` so that low-noise steps keep weight 1 (and ``lambda`` its meaning).
    """
    a = torch.as_tensor(alphas_cumprod_t)
    snr = a / (1 - a)  # inf at a == 1, weight 1
    return (snr / snr_gamma).sqrt().clamp(max=1.0)


def default_levels(frames: int, wavelet: str = "haar") -> int:
    """DWT levels for a clip of ``frames`` frames: the deepest level its ``frames - 1`` motion vectors allow.

    For Haar this is the reference README's rule (2 levels for 8 frames, 3 for 16) and continues it
    (4 for 17..32 frames): the coarsest approximation then summarises the whole clip.
    """
    return dwt_max_level(frames - 1, wavelet)


# ----------------------------------------------------------------------------------------------
# Config and output
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SMAConfig:
    """Settings of `SMALoss`, under the names the node, the command line and LoRA metadata use.

    Attributes:
        sma_mode: ``"paper"`` (the reference formulas), ``"plus"`` (fixed; default) or ``"off"`` (the
            trainer adds no SMA term; `SMALoss` refuses it).
        lambda_global: weight of the wavelet (global) term; 0 skips it.
        lambda_local: weight of the Fourier (local) term.
        wavelet_levels: DWT levels; None picks `default_levels` from the frame count.
        level_weights: one weight per band, reference order ``(approx_J, detail_1, ..., detail_J)``
            with detail 1 the finest; ``wavelet_levels + 1`` values. None means all 1.
        wavelet: a discrete PyWavelets wavelet.
        wavelet_mode: DWT padding; None means ``"zero"`` in paper mode, ``"symmetric"`` in plus mode.
        weight_delta, weight_base: shape of the low-frequency weight ``Wt`` (see `low_frequency_weight`).
        weight_sharpness: plus mode: exponent on ``Wt`` before normalising it to mean 1 (0 flat,
            1 the paper's relative weighting, larger values favour low frequencies more).
        snr_gamma: plus mode: gamma of the timestep weight `timestep_weight`; None disables it. Used
            only when ``alphas_cumprod_t`` is passed to the loss.
        snr_normalise: plus mode: divide that weight by its mean over the trained timesteps (when `SMALoss`
            is given them), so that it averages 1 where training happens (earlier versions: off).
        phase_loss: plus mode: ``"wrap"`` (``1 - cos dphi``) or ``"raw"`` (``|dphi|``, for ablations).
    """

    sma_mode: Literal["paper", "plus", "off"] = setting("plus", choices=SMA_MODES)
    lambda_global: float = setting(0.4, low=0, high=10)
    lambda_local: float = setting(0.2, low=0, high=10)
    wavelet_levels: int | None = setting(None, low=1, high=8, whole=True, optional=True)
    level_weights: tuple[float, ...] | None = None
    wavelet: str = "haar"
    wavelet_mode: str | None = None
    weight_delta: float = setting(0.05, low=0, strict=True, high=10)
    weight_base: float = setting(1.0, low=0, high=10)
    weight_sharpness: float = setting(1.0, low=0, high=10)
    snr_gamma: float | None = setting(5.0, low=0, strict=True, high=100, optional=True)
    snr_normalise: bool = setting(True, switch=True)
    phase_loss: Literal["wrap", "raw"] = setting("wrap", choices=PHASE_LOSSES)

    def __post_init__(self) -> None:
        check_limits(self)
        if self.level_weights is not None:
            weights = tuple(self.level_weights)
            for w in weights:
                check_number("each level weight", w, 0)
            if self.wavelet_levels is not None and len(weights) != self.wavelet_levels + 1:
                raise SMAInputError(
                    f"level_weights needs wavelet_levels + 1 = {self.wavelet_levels + 1} values (approximation + "
                    f"one per level), got {len(weights)}"
                )
            object.__setattr__(self, "level_weights", weights)
        check_wavelet(self.wavelet)
        if self.wavelet_mode is not None:
            check_mode(self.wavelet_mode)

    @property
    def enabled(self) -> bool:
        """False in mode ``"off"``: training adds no SMA term."""
        return self.sma_mode != SMA_OFF

    @property
    def resolved_wavelet_mode(self) -> str:
        """The DWT padding actually used (one of ``spectral.MODES``)."""
        if self.wavelet_mode is not None:
            return self.wavelet_mode
        return "zero" if self.sma_mode == "paper" else "symmetric"



@dataclass
class SMALossOutput:
    """Loss terms, 0-d tensors (``total`` carries the graph; log the others with ``.item()``).

    ``total = lambda_global * global_ + lambda_local * local`` and ``local = local_amplitude +
    local_phase``. Every term is a batch mean after the timestep weight; ``global_`` includes the
    level weights, ``global_bands`` (order ``approx_J, detail_1, ..., detail_J``) does not and is
    empty when ``lambda_global`` is 0. ``timestep_weight`` is ``[B]``, or None when not used.
    """

    total: Tensor
    global_: Tensor
    local: Tensor
    local_amplitude: Tensor
    local_phase: Tensor
    global_bands: tuple[Tensor, ...]
    timestep_weight: Tensor | None


# ----------------------------------------------------------------------------------------------
# The loss
# ----------------------------------------------------------------------------------------------


class SMALoss(nn.Module):
    """Spectral Motion Alignment loss between predicted and reference clean latents (no parameters).

    ``check_finite`` rejects NaN/inf inputs with an SMAInputError (one device sync per input); the
    trainer turns it off and checks its losses once per step instead.

    ``trained_alphas_cumprod`` (plus mode): ``abar_t`` of every timestep training draws from (uniformly). The
    timestep weight is then divided by its mean over them, so that it averages 1 where training happens and
    ``lambda_global`` / ``lambda_local`` keep their meaning whatever the timestep range. Without it the weight
    is the raw ``min(1, sqrt(SNR / gamma))``, which averages about 0.1 over t = 400..999 and leaves SMA a few
    percent of the training signal (docs/sma-loss.md).
    """

    def __init__(self, config: SMAConfig | None = None, *, check_finite: bool = True,
                 trained_alphas_cumprod: Tensor | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else SMAConfig()
        if not self.config.enabled:
            raise SMAInputError('SMALoss needs sma_mode "paper" or "plus", not "off".')
        self.check_finite = check_finite
        self.weight_mean = 1.0
        if trained_alphas_cumprod is not None and self.config.snr_gamma is not None and self.config.snr_normalise:
            self.weight_mean = float(timestep_weight(trained_alphas_cumprod.double(), self.config.snr_gamma).mean())

    def _levels(self, frames: int) -> int:
        cfg = self.config
        max_level = default_levels(frames, cfg.wavelet)
        levels = cfg.wavelet_levels if cfg.wavelet_levels is not None else max(max_level, 1)
        if not 1 <= levels <= max_level:
            need = (filter_length(cfg.wavelet) - 1) * 2**levels + 1
            raise SMAInputError(
                f"the wavelet term with {levels} level(s) of {cfg.wavelet!r} needs at least {need} frames; "
                f"this clip has {frames} ({frames - 1} motion vectors), which allows at most {max_level} "
                "level(s): lower wavelet_levels, use more frames, or set lambda_global to 0"
            )
        if cfg.level_weights is not None and len(cfg.level_weights) != levels + 1:
            raise SMAInputError(
                f"level_weights has {len(cfg.level_weights)} values but {levels} level(s) need {levels + 1}"
            )
        return levels

    def _global_bands(self, d_pred: Tensor, d_target: Tensor) -> list[Tensor]:
        """Per-sample band L1 ``[B]`` each, order ``approx_J, detail_1, ..., detail_J``."""
        cfg = self.config
        levels = self._levels(d_pred.shape[1] + 1)

        def signals(d: Tensor) -> Tensor:  # one time series per latent value
            return rearrange(d, "b f c h w -> b (c h w) f")

        mode = cfg.resolved_wavelet_mode
        coeffs_pred = wavedec(signals(d_pred), cfg.wavelet, levels, mode)
        coeffs_target = wavedec(signals(d_target), cfg.wavelet, levels, mode)
        bands = [(p - t).abs().mean(dim=(1, 2)) for p, t in zip(coeffs_pred, coeffs_target)]
        return [bands[0], *bands[:0:-1]]  # pywt order (cA_J, cD_J..cD_1) -> (cA_J, cD_1..cD_J)

    def _local_terms(self, d_pred: Tensor, d_target: Tensor) -> tuple[Tensor, Tensor]:
        """Per-sample weighted amplitude and phase terms ``[B]`` each."""
        cfg = self.config
        paper = cfg.sma_mode == "paper"
        norm = "backward" if paper else "ortho"
        amp_pred, phase_pred = amplitude_phase(fft2_centered(d_pred, norm))
        amp_target, phase_target = amplitude_phase(fft2_centered(d_target, norm))
        h, w = d_pred.shape[-2:]
        weight = low_frequency_weight(
            h, w, cfg.weight_delta, cfg.weight_base,
            normalize=not paper,
            device=d_pred.device,
            dtype=amp_pred.dtype,
            sharpness=1.0 if paper else cfg.weight_sharpness,
        )
        dims = (1, 2, 3, 4)
        amplitude = ((amp_pred - amp_target).abs() * weight).mean(dim=dims)
        phase_kind = "raw" if paper else cfg.phase_loss
        phase = (phase_distance(phase_pred, phase_target, phase_kind) * weight).mean(dim=dims)
        return amplitude, phase

    def forward(self, pred_z0: Tensor, target_z0: Tensor, alphas_cumprod_t: Tensor | None = None) -> SMALossOutput:
        """SMA loss of predicted clean latents against the reference.

        Args:
            pred_z0: ``z0_hat`` ``[B, F, C, H, W]`` (e.g. from `tweedie_estimate`), F >= 2.
            target_z0: reference latents, same shape.
            alphas_cumprod_t: ``abar_t`` per sample ``[B]``; plus mode uses it for `timestep_weight`.

        Returns:
            `SMALossOutput`. Computed in float32 for fp16 / bf16 inputs (float64 stays float64).
        """
        cfg = self.config
        _check_video(pred_z0, "pred_z0")
        _check_video(target_z0, "target_z0")
        if pred_z0.shape != target_z0.shape:
            raise SMAInputError(
                f"pred_z0 has shape {tuple(pred_z0.shape)} but target_z0 has shape "
                f"{tuple(target_z0.shape)}: they must match"
            )
        dtype = compute_dtype(pred_z0, "pred_z0")
        compute_dtype(target_z0, "target_z0")
        if self.check_finite:
            for name, z in (("pred_z0", pred_z0), ("target_z0", target_z0)):
                if not bool(torch.isfinite(z).all()):
                    raise SMAInputError(f"{name} contains NaN or inf values")
        batch = pred_z0.shape[0]

        d_pred = motion_vectors(pred_z0.to(dtype))
        d_target = motion_vectors(target_z0.to(dtype))
        if cfg.sma_mode == "paper":  # the reference aligns |dz|: direction is lost
            d_pred, d_target = d_pred.abs(), d_target.abs()

        weight = None
        if cfg.sma_mode == "plus" and cfg.snr_gamma is not None and alphas_cumprod_t is not None:
            a = _per_sample(alphas_cumprod_t, batch, 1, dtype).to(pred_z0.device).expand(batch)
            weight = timestep_weight(a, cfg.snr_gamma) / self.weight_mean

        def batch_mean(per_sample: Tensor) -> Tensor:
            return (per_sample if weight is None else per_sample * weight).mean()

        zero = d_pred.new_zeros(())
        bands: list[Tensor] = []
        global_ = zero
        if cfg.lambda_global > 0:
            per_band = self._global_bands(d_pred, d_target)
            level_weights = cfg.level_weights or (1.0,) * len(per_band)
            bands = [batch_mean(band) for band in per_band]
            global_ = batch_mean(sum(lw * band for lw, band in zip(level_weights, per_band)))
        amplitude, phase = self._local_terms(d_pred, d_target)
        local_amplitude, local_phase = batch_mean(amplitude), batch_mean(phase)
        local = local_amplitude + local_phase
        return SMALossOutput(
            total=cfg.lambda_global * global_ + cfg.lambda_local * local,
            global_=global_,
            local=local,
            local_amplitude=local_amplitude,
            local_phase=local_phase,
            global_bands=tuple(bands),
            timestep_weight=weight,
        )
