"""Training a motion LoRA: config, clips, objectives, memory/precision plumbing, checkpoints, the loop.

The public entry point is :mod:`sma.train` (``Trainer``, ``TrainConfig``, ``TrainingClip``, ...).
"""
