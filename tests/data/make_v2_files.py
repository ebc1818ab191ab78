"""Writes ``v2_checkpoint/checkpoint-000002.safetensors`` and ``v2_lora.safetensors`` with the code of format 2.

Format 2 nested the loss settings under their loss-side names (``mode``, ``levels``, ``delta``, ``base``)
and recorded the LoRA file's steps done as ``steps`` beside ``steps_planned``. Run once from the repository
root with the code of that format (commit d20c456)::

    MKL_CBWR=COMPATIBLE OMP_NUM_THREADS=1 PYTHONPATH=. python tests/data/make_v2_files.py

``tests/test_train.py`` resumes the checkpoint and reads the LoRA file with the current code.
"""
import sys
from pathlib import Path

import torch

from sma.lora import save_motion_lora
from sma.models.build import make_noise_scheduler, tiny_motion_unet
from sma.training import TrainConfig, Trainer, TrainingClip

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_v1_checkpoint import square_clip  # noqa: E402  (the same clip)

HERE = Path(__file__).resolve().parent


if __name__ == "__main__":
    config = TrainConfig(steps=2, seed=5, rank=2, learning_rate=1e-3, spatial_learning_rate=2e-4, wavelet_levels=2,
                         weight_delta=0.1, weight_base=0.5, spatial_path=True, gradient_checkpointing=False,
                         checkpoint_every=2, checkpoint_dir=str(HERE / "v2_checkpoint"), keep_checkpoints=1)
    clips = [TrainingClip(square_clip(), torch.zeros(1, 77, 32), "square")]
    result = Trainer(tiny_motion_unet("v3", seed=0), clips, make_noise_scheduler(), config).run()
    save_motion_lora(HERE / "v2_lora.safetensors", result.lora_state, result.metadata)
