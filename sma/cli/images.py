"""Small image outputs of the CLI: frames as uint8, frame grids (PNG) and animated GIFs, written atomically."""

from __future__ import annotations

import math
import os

import numpy as np
from PIL import Image

from ..atomic import atomic_write_path
from ..errors import SMAInputError
from ..preview import frames_to_uint8

__all__ = ["frame_grid", "frames_to_uint8", "save_gif"]


def frame_grid(frames: np.ndarray, columns: int = 8, gap: int = 2) -> np.ndarray:
    """``uint8 [F, H, W, 3]`` -> one ``uint8`` image with up to ``columns`` frames per row (white gaps)."""
    count, height, width, _ = frames.shape
    columns = max(1, min(columns, count))
    rows = math.ceil(count / columns)
    grid = np.full((rows * height + (rows - 1) * gap, columns * width + (columns - 1) * gap, 3), 255, np.uint8)
    for index, frame in enumerate(frames):
        row, col = divmod(index, columns)
        top, left = row * (height + gap), col * (width + gap)
        grid[top:top + height, left:left + width] = frame
    return grid


def save_gif(frames: np.ndarray, path: str | os.PathLike, fps: float) -> None:
    """Write ``uint8 [F, H, W, 3]`` as a looping animated GIF at ``fps``, atomically."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or not len(frames):
        raise SMAInputError(f"expected uint8 frames [F, H, W, 3], got {frames.dtype} {frames.shape}.")
    images = [Image.fromarray(frame) for frame in frames]
    with atomic_write_path(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                       duration=max(20, round(1000 / fps)), loop=0)
