"""Train an AnimateDiff motion LoRA with MotionDirector's dual path and the SMA loss.

The public API is :mod:`sma.training`; this module is an alias of it::

    from sma.training import Trainer, TrainConfig, TrainingClip, TrainCallbacks
    clips = [TrainingClip(latents, text_embedding)]          # [F, 4, h, w] scaled latents, [1, 77, 768]
    result = Trainer(unet, clips, make_noise_scheduler(), TrainConfig(steps=300)).run(callbacks)
    save_motion_lora(path, result.lora_state, result.metadata)

Design choices:

- Spatial path: one random frame per window goes through the UNet with every motion module
  bypassed (returns its input), i.e. through the plain image model, as MotionDirector's AnimateDiff
  port does by feeding single frames. Only the spatial LoRA learns there; in the temporal path it is
  active but frozen (and switched off on the ``spatial_skip_prob`` share of steps), so appearance goes
  into the spatial LoRA and motion into the motion LoRA. The spatial LoRA is never in the ADE file.
- Frames: each step trains on a random window of ``frames`` consecutive frames of each clip (default:
  the shortest clip, capped at the motion module's positional-encoding length, 24 for v1 and 32 for
  v2/v3), so clips of any length (>= 2 frames) can be mixed; clips batched together
  (``clips_per_step > 1``) need equal latent sizes.
- Checkpoints: one safetensors file per checkpoint (tensors: LoRA weights, optimizer moments, RNG
  states; JSON metadata: step, config, loss history, LR-scheduler, GradScaler, Python/NumPy RNG),
  written atomically; resuming continues bit for bit on CPU.
- The trainer sets the model's GroupNorms to what AnimateDiff-Evolved runs and refuses noise schedules
  other than AnimateDiff's linear 0.00085..0.012 betas.
"""

from .training import *  # noqa: F403
from .training import __all__  # noqa: F401
