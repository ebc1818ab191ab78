"""Apply Motion LoRA: put a learned motion into AnimateDiff-Evolved's motion-LoRA chain."""
from __future__ import annotations

from pathlib import Path

import folder_paths
from comfy_api.v0_0_2 import io

from ..sma.errors import SMAInputError
from ..sma.lora.ade_files import describe, read_for_ade
from .common import CATEGORY, MOTION_LORA_FOLDER, user_errors

MotionLora = io.Custom("MOTION_LORA")
ADE_LORA_LOADER = "ADE_AnimateDiffLoRALoader"
ADE_MISSING = (
    "AnimateDiff-Evolved is not installed, and it is what samples with motion LoRAs. Install it with "
    "ComfyUI-Manager (search 'AnimateDiff Evolved'), or: cd ComfyUI/custom_nodes && git clone "
    "https://github.com/Kosinkadink/ComfyUI-AnimateDiff-Evolved, then restart ComfyUI.")


def _ade_lora_loader():
    import nodes as comfy_nodes  # ComfyUI's own module (the pack's nodes/ is a sub-package)

    loader = comfy_nodes.NODE_CLASS_MAPPINGS.get(ADE_LORA_LOADER)
    if loader is None:
        raise SMAInputError(ADE_MISSING)
    return loader


def _lora_path(name: str) -> str:
    path = folder_paths.get_full_path(MOTION_LORA_FOLDER, name)
    if path is None:
        raise SMAInputError(f"no motion LoRA named {name!r} in models/{MOTION_LORA_FOLDER}: train one with Train "
                            "Motion LoRA (SMA), or copy the file there and refresh the page.")
    return path


class ApplyMotionLoRA(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SMA_ApplyMotionLoRA",
            display_name="Apply Motion LoRA (SMA)",
            category=f"{CATEGORY}/lora",
            description=(
                "Adds a learned motion LoRA to AnimateDiff-Evolved's motion-LoRA chain: connect the output to "
                "'motion_lora' of AnimateDiff-Evolved's Apply AnimateDiff Model. Chain several with prev_motion_lora. LoRAs from other "
                "trainers are converted once to ADE's format (<name>.ade.safetensors)."),
            inputs=[
                io.Combo.Input("lora_name", options=folder_paths.get_filename_list(MOTION_LORA_FOLDER),
                               tooltip="A file in models/animatediff_motion_lora (where Train Motion LoRA saves)."),
                io.Float.Input("strength", default=1.0, min=0.0, max=10.0, step=0.01,
                               tooltip="How strongly the learned motion applies. 1.0 as trained; 0.6-0.9 if the motion "
                                       "overpowers the prompt."),
                MotionLora.Input("prev_motion_lora", optional=True, tooltip="An earlier motion LoRA of the chain."),
            ],
            outputs=[
                MotionLora.Output(display_name="motion_lora"),
                io.String.Output(display_name="info", tooltip="Layers, rank and the training settings in the file."),
            ],
        )

    @classmethod
    def execute(cls, lora_name: str, strength: float, prev_motion_lora=None) -> io.NodeOutput:
        with user_errors("Apply Motion LoRA"):
            loader = _ade_lora_loader()
            ade_name, state, metadata = read_for_ade(lora_name, Path(_lora_path(lora_name)))
            info = describe(lora_name, state, metadata)
        (chain,) = loader().load_motion_lora(name=ade_name, strength=strength, prev_motion_lora=prev_motion_lora)
        return io.NodeOutput(chain, info)
