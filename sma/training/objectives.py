"""The temporal path's training objectives: the diffusion target, MotionDirector's appearance-debiased loss and
VMC's residual alignment (:func:`residual_alignment`).

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


def residual_alignment(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """VMC's motion distillation: ``1 - cos`` between the frame residuals of the prediction and the target.

    ``pred``, ``target``: ``[B, F, C, H, W]`` (the predicted and the true noise, or v). The residual of frame
    ``f`` is ``x[f + 1] - x[f]``; each is one vector ``[C * H * W]``, so only the direction of the change
    between frames is fitted, not the frames themselves (there is no plain MSE). A scalar, mean over videos
    and frame pairs.
    """
    if pred.shape[1] < 2:
        raise SMAInputError("the residual alignment needs at least 2 frames.")
    d_pred = (pred[:, 1:] - pred[:, :-1]).flatten(2)
    d_target = (target[:, 1:] - target[:, :-1]).flatten(2)
    return (1 - F.cosine_similarity(d_pred, d_target, dim=-1, eps=1e-8)).mean()


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
