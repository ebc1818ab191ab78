"""Writes ``v1_checkpoint/checkpoint-000002.safetensors``: a format-1 training checkpoint of the tiny model.

Run once from the repository root with the code of format 1 (commit 68af14c), which still used the
flat settings ``lr_temporal`` / ``sma_levels`` / ``spatial_lora``::

    MKL_CBWR=COMPATIBLE OMP_NUM_THREADS=1 PYTHONPATH=. python tests/data/make_v1_checkpoint.py

(``MKL_CBWR`` as the tests set it, so the CPU kernels round the same way.)

``tests/test_train.py::test_format_1_checkpoint_resumes`` resumes it with the current code.
"""
from pathlib import Path

import torch

from sma.models.build import make_noise_scheduler, tiny_motion_unet
from sma.training import TrainConfig, Trainer, TrainingClip

FOLDER = Path(__file__).resolve().parent / "v1_checkpoint"


def square_clip(frames: int = 8, size: int = 8) -> torch.Tensor:
    """Latents ``[F, 4, size, size]``: a 3x3 square moving 1 px per frame to the right."""
    z = torch.full((frames, 4, size, size), -0.5)
    for f in range(frames):
        z[f, :, 2:5, 1:4] = 1.0
        z[f] = torch.roll(z[f], shifts=f, dims=-1)
    return z


if __name__ == "__main__":
    config = TrainConfig(steps=2, seed=5, rank=2, lr_temporal=1e-3, lr_spatial=2e-4, sma_levels=2,
                         spatial_lora=True, gradient_checkpointing=False, checkpoint_every=2,
                         checkpoint_dir=str(FOLDER), keep_checkpoints=1)
    clips = [TrainingClip(square_clip(), torch.zeros(1, 77, 32), "square")]
    Trainer(tiny_motion_unet("v3", seed=0), clips, make_noise_scheduler(), config).run()
