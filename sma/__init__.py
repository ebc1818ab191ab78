"""Spectral Motion Alignment (SMA) for AnimateDiff motion LoRAs.

A plain-Python library (no ComfyUI import anywhere in it): spectral transforms, the SMA loss,
AnimateDiff model loading, ADE-format motion LoRAs and the trainer. ``python -m sma`` is its CLI.
"""

__version__ = "0.1.0"
