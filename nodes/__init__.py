"""Thin ComfyUI (V3 API) adapters over the ``sma`` library, one module per node family."""
from comfy_api.v0_0_2 import io

from .common import register_model_folders
from .lora import ApplyMotionLoRA
from .metrics import MotionFidelity
from .spectra import VisualizeSpectra
from .train import AddReferenceClip, SMALossOptions, TrainMotionLoRA
from .video import LoadReferenceVideo

register_model_folders()

NODE_CLASSES: list[type[io.ComfyNode]] = [
    LoadReferenceVideo,
    TrainMotionLoRA,
    AddReferenceClip,
    SMALossOptions,
    ApplyMotionLoRA,
    VisualizeSpectra,
    MotionFidelity,
]
