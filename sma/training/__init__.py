"""Training a motion LoRA: the package API.

``train_motion_lora`` runs the whole job (encode -> build -> train -> save) for the node and the command
line; ``Trainer`` is the loop itself; ``TrainConfig`` (with its ``SMAConfig`` and ``LoRAConfig``) every
setting. Modules: config, data (clips, windows), objectives, memory (precision, checkpointing),
checkpoint (resumable files), optim, model (checks), reports, trainer, pipeline.
"""

from ..errors import TrainingDiverged
from .checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
from .config import DEFAULTS, TrainConfig
from .data import TrainingClip
from .objectives import debias, debiased_mse
from .pipeline import TrainingSource, TrainOutcome, partial_path, train_motion_lora
from .reports import StepReport, TrainCallbacks, TrainResult
from .trainer import Trainer

__all__ = [
    "DEFAULTS", "StepReport", "TrainCallbacks", "TrainConfig", "TrainOutcome", "TrainResult", "Trainer",
    "TrainingClip", "TrainingDiverged", "TrainingSource", "debias", "debiased_mse", "latest_checkpoint",
    "list_checkpoints", "load_checkpoint", "partial_path", "train_motion_lora",
]
