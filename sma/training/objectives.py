"""MotionDirector's training objectives: the diffusion target and the appearance-debiased loss.

Learned from MotionDirector and its AnimateDiff port: the temporal loss is
``MSE(pred, target) + MSE(debias(pred), debias(target))`` where ``debias`` subtracts an anchor frame,
``debias(x)[f] = sqrt(beta^2 + 1) * x[f] - beta * x[anchor]``, applied to the model output and to the
target (noise for epsilon prediction) in the same way. Removing a frame that carries the clip's
appearance leaves mostly the frame-to-frame change for the temporal LoRA to fit.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler

from ..errors import SMAInputError
from ..loss import PREDICTION_TYPES



def debias(x: torch.Tensor, anchor: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """``sqrt(beta^2 + 1) * x - beta * x[anchor]`` per video.

    Args:
        x: ``[B, F, C, H, W]``.
        anchor: ``[B]`` frame index per video (long).
        beta: debiasing strength (MotionDirector: 1).

    Returns:
        ``[B, F, C, H, W]``.
    """
    anchor_frames = x[torch.arange(x.shape[0], device=x.device), anchor.to(x.device)]  # [B, C, H, W]
    return math.sqrt(beta * beta + 1.0) * x - beta * anchor_frames[:, None]


def debiased_mse(pred: torch.Tensor, target: torch.Tensor, anchor: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """MSE between the debiased prediction and target, both ``[B, F, C, H, W]``; a scalar."""
    return F.mse_loss(debias(pred, anchor, beta), debias(target, anchor, beta))


ANIMATEDIFF_BETAS = ("linear", 0.00085, 0.012)
"""The schedule AnimateDiff is trained and sampled with (ADE: ``sqrt_linear (AnimateDiff)``)."""


def prediction_type(scheduler: DDPMScheduler) -> str:
    """The scheduler's prediction type after checking it is a usable training schedule.

    Raises:
        SMAInputError: betas other than AnimateDiff's linear 0.00085..0.012 (e.g. SD1.5's
            ``scaled_linear``: a LoRA trained on it fits a model users do not sample), or a prediction
            type other than epsilon / v_prediction.
    """
    config = scheduler.config
    schedule = (config.beta_schedule, float(config.beta_start), float(config.beta_end))
    if schedule[0] != ANIMATEDIFF_BETAS[0] or not all(
            math.isclose(a, b, rel_tol=1e-6) for a, b in zip(schedule[1:], ANIMATEDIFF_BETAS[1:])):
        raise SMAInputError(
            f"the noise scheduler uses {schedule[0]} betas {schedule[1]}..{schedule[2]}; AnimateDiff is trained and "
            "sampled with linear betas 0.00085..0.012. Use sma.models.build.make_noise_scheduler()."
        )
    kind = config.prediction_type
    if kind not in PREDICTION_TYPES:
        raise SMAInputError(f"the noise scheduler predicts {kind!r}; training supports {', '.join(PREDICTION_TYPES)}.")
    return kind


def diffusion_target(scheduler: DDPMScheduler, clean: torch.Tensor, noise: torch.Tensor,
                     timesteps: torch.Tensor) -> torch.Tensor:
    """What the UNet should output: the noise (epsilon) or the velocity (v-prediction); shape of ``clean``."""
    if prediction_type(scheduler) == "epsilon":
        return noise
    return scheduler.get_velocity(clean, noise, timesteps)
