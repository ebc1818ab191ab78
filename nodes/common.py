"""What every node of the pack shares: its category, model folders, and user-facing errors."""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import folder_paths

from ..sma.errors import SMAError

CATEGORY = "SMA"
MOTION_MODELS_FOLDER = "animatediff_models"  # AnimateDiff-Evolved's folder names: shared, never replaced
MOTION_LORA_FOLDER = "animatediff_motion_lora"
MODEL_EXTENSIONS = {".safetensors", ".ckpt", ".pt", ".pth", ".bin"}


def register_model_folders() -> None:
    """Make sure ADE's motion-model and motion-LoRA folders exist in ``folder_paths``.

    Adds the default ``models/<name>`` folder (and the extensions) without removing anything
    AnimateDiff-Evolved or the user's extra_model_paths registered, whichever pack loads first.
    """
    for name in (MOTION_MODELS_FOLDER, MOTION_LORA_FOLDER):
        path = os.path.join(folder_paths.models_dir, name)
        os.makedirs(path, exist_ok=True)
        folder_paths.add_model_folder_path(name, path)
        folder_paths.folder_names_and_paths[name][1].update(MODEL_EXTENSIONS)


def motion_lora_folder() -> str:
    """Where trained and merged LoRAs go: ``models/animatediff_motion_lora`` (listed by ADE's loader)."""
    return os.path.join(folder_paths.models_dir, MOTION_LORA_FOLDER)


@contextlib.contextmanager
def user_errors(node_name: str) -> Iterator[None]:
    """Turn the pack's errors (bad input, a diverged run) into a short node error (no traceback from deep inside)."""
    try:
        yield
    except SMAError as error:
        raise ValueError(f"{node_name}: {error}") from None
