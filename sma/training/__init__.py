"""Training a motion LoRA with MotionDirector's dual path and the SMA loss: the package API.

``train_motion_lora`` runs the whole job (encode -> build -> train -> save) for the node and the command
line; ``Trainer`` is the loop itself; ``TrainConfig`` (with its ``SMAConfig`` and ``LoRAConfig``) every
setting. Modules: config, data (clips, windows), objectives, memory (precision, checkpointing),
checkpoint (resumable files), optim, model (checks), reports, samples (validation samples), hooks (what the loop
does after a step: previews, checkpoints, validation samples), trainer, pipeline::

    from sma.training import Trainer, TrainConfig, TrainingClip
    clips = [TrainingClip(latents, text_embedding)]          # [F, 4, h, w] scaled latents, [1, 77, 768]
    result = Trainer(unet, clips, make_noise_scheduler(), TrainConfig.from_flat(steps=300)).run(callbacks)
    save_motion_lora(path, result.lora_state, result.metadata)

Design choices:

- Spatial path: one random frame per window goes through the UNet with every motion module bypassed (returns
  its input), i.e. through the plain image model, as MotionDirector's AnimateDiff port does by feeding single
  frames. Only the spatial LoRA learns there; in the temporal path it is active but frozen (and switched off on
  the ``spatial_skip_prob`` share of steps), so appearance goes into the spatial LoRA and motion into the motion
  LoRA. The spatial LoRA is never in the ADE file.
- Frames: each step trains on a random window of ``window`` consecutive frames of each clip (default: the
  shortest clip, capped at the motion module's positional-encoding length, 24 for v1 and 32 for v2/v3), so clips
  of any length (>= 2 frames) can be mixed; clips batched together (``clips_per_step > 1``) need equal latent
  sizes.
- Checkpoints: one safetensors file per checkpoint (tensors: LoRA weights, optimizer moments, RNG states; JSON
  metadata: step, config, loss history, LR-scheduler, GradScaler, Python/NumPy RNG), written atomically;
  resuming continues bit for bit on CPU.
- The trainer sets the model's GroupNorms to what AnimateDiff-Evolved runs and refuses noise schedules other
  than AnimateDiff's linear 0.00085..0.012 betas.
"""

from ..errors import TrainingDiverged
from .checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
from .hooks import StepHook
from .config import DEFAULTS, TrainConfig, setting_names
from .data import TrainingClip
from .memory import free_memory, motion_modules_bypassed
from .model import MOTION_ADAPTER, SPATIAL_ADAPTER
from .objectives import debias, debiased_mse, diffusion_target
from .optim import lr_factor
from .pipeline import TrainingSource, TrainOutcome, partial_path, train_motion_lora
from .reports import StepReport, TrainCallbacks, TrainResult
from .samples import ValidationPrompt
from .trainer import Trainer

__all__ = [
    "DEFAULTS", "MOTION_ADAPTER", "SPATIAL_ADAPTER", "StepHook", "StepReport", "TrainCallbacks", "TrainConfig", "TrainOutcome", "TrainResult", "Trainer",
    "TrainingClip", "TrainingDiverged", "TrainingSource", "ValidationPrompt", "debias", "debiased_mse",
    "diffusion_target", "free_memory", "latest_checkpoint", "list_checkpoints", "load_checkpoint", "lr_factor",
    "motion_modules_bypassed", "partial_path", "setting_names", "train_motion_lora",
]
