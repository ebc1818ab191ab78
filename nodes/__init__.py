"""Thin ComfyUI (V3 API) adapters over the ``sma`` library, one module per node family."""
from comfy_api.v0_0_2 import io

from .common import register_model_folders
from .lora import ApplyMotionLoRA
from .merge import MergeMotionLoRAs
from .metrics import MotionFidelity
from .prompt_inputs import register_prompt_filter
from .spectra import VisualizeSpectra
from .train import AddReferenceClip, SMALossOptions, SMAMotionOptions, TrainMotionLoRA
from .video import LoadReferenceVideo

register_model_folders()

NODE_CLASSES: list[type[io.ComfyNode]] = [
    LoadReferenceVideo,
    TrainMotionLoRA,
    AddReferenceClip,
    SMALossOptions,
    SMAMotionOptions,
    ApplyMotionLoRA,
    MergeMotionLoRAs,
    VisualizeSpectra,
    MotionFidelity,
]

register_prompt_filter(NODE_CLASSES)
