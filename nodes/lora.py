"""Apply Motion LoRA: put a learned motion into AnimateDiff-Evolved's motion-LoRA chain."""
from __future__ import annotations

from pathlib import Path

import folder_paths
from comfy_api.latest import io
from comfy_execution.validation import validate_node_input

from ..sma.errors import SMAInputError
from ..sma.lora import lora_rank, read_lora_file, save_motion_lora
from ..sma.lora.convert import to_ade_state_dict
from ..sma.lora.files import decode_metadata
from .common import CATEGORY, MOTION_LORA_FOLDER, user_errors

MotionLora = io.Custom("MOTION_LORA")
ADE_LORA_LOADER = "ADE_AnimateDiffLoRALoader"
ADE_MISSING = (
    "AnimateDiff-Evolved is not installed, and it is what samples with motion LoRAs. Install it with "
    "ComfyUI-Manager (search 'AnimateDiff Evolved'), or: cd ComfyUI/custom_nodes && git clone "
    "https://github.com/Kosinkadink/ComfyUI-AnimateDiff-Evolved, then restart ComfyUI.")


def ade_lora_loader():
    import nodes as comfy_nodes  # ComfyUI's own module (the pack's nodes/ is a sub-package)

    loader = comfy_nodes.NODE_CLASS_MAPPINGS.get(ADE_LORA_LOADER)
    if loader is None:
        raise ValueError(f"Apply Motion LoRA: {ADE_MISSING}")
    return loader


def lora_path(name: str) -> str:
    path = folder_paths.get_full_path(MOTION_LORA_FOLDER, name)
    if path is None:
        raise SMAInputError(f"no motion LoRA named {name!r} in models/{MOTION_LORA_FOLDER}: train one with Train "
                            "Motion LoRA (SMA), or copy the file there and refresh the page.")
    return path


def ade_readable_name(name: str, path: Path, raw_keys: set[str], state: dict, metadata: dict) -> str:
    """The name of an ADE-readable version of motion LoRA ``name`` (itself when it already is one).

    ``raw_keys``: the file's keys; ``state`` / ``metadata``: the file read as an ADE-layout LoRA. LoRAs from
    other trainers (diffusers / kohya / MotionDirector naming, alpha keys) are converted once into
    ``<stem>.ade.safetensors`` beside the original, which ADE's own loader then reads.
    """
    if raw_keys == set(state) and path.suffix == ".safetensors":
        return name
    converted = path.with_name(path.stem + ".ade.safetensors")
    if not converted.is_file() or converted.stat().st_mtime < path.stat().st_mtime:
        save_motion_lora(converted, state, {**metadata, "converted_from": path.name})
    return str(Path(name).with_name(converted.name))


def describe(name: str, state: dict, metadata: dict) -> str:
    """One paragraph about a motion LoRA: layers, rank, and the training settings its metadata carries."""
    lines = [f"{name}: {len(state) // 2} layers, rank {lora_rank(state) or 'mixed'}"]
    for key in ("family", "motion_module", "frames", "width", "height", "steps", "sma_mode", "version"):
        if key in metadata:
            lines.append(f"{key}: {metadata[key]}")
    return "\n".join(lines)


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
                io.String.Input("trained_lora", optional=True, force_input=True,
                                tooltip="Link Train Motion LoRA's lora_name here to train and generate in one Queue: "
                                        "the file trained in this run is used instead of lora_name (which then "
                                        "need not exist yet)."),
            ],
            outputs=[
                MotionLora.Output(display_name="motion_lora"),
                io.String.Output(display_name="info", tooltip="Layers, rank and the training settings in the file."),
            ],
        )

    @classmethod
    def validate_inputs(cls, lora_name: str, input_types=None):
        """``lora_name`` must be listed unless ``trained_lora`` is linked (the file is made in the same run).

        Asking for ``input_types`` turns off ComfyUI's own type check of linked inputs, so it is done here.
        """
        linked = input_types or {}
        for name, expected in (("trained_lora", "STRING"), ("prev_motion_lora", MotionLora.io_type)):
            if name in linked and not validate_node_input(linked[name], expected):
                return f"{name} takes {expected}, but a {linked[name]} output is linked to it"
        if "trained_lora" in linked or lora_name in folder_paths.get_filename_list(MOTION_LORA_FOLDER):
            return True
        return (f"no motion LoRA named {lora_name!r} in models/{MOTION_LORA_FOLDER}: train one with Train Motion LoRA "
                "(SMA) and link its lora_name to trained_lora, or copy the file there and refresh the page")

    @classmethod
    def execute(cls, lora_name: str, strength: float, prev_motion_lora=None, trained_lora: str | None = None
                ) -> io.NodeOutput:
        loader = ade_lora_loader()
        lora_name = trained_lora or lora_name
        with user_errors("Apply Motion LoRA"):
            path = Path(lora_path(lora_name))
            raw, raw_metadata = read_lora_file(path)  # read once; converted in memory
            state, _ = to_ade_state_dict(raw, raw_metadata, source=path.name)
            metadata = decode_metadata(raw_metadata)
            ade_name = ade_readable_name(lora_name, path, set(raw), state, metadata)
            info = describe(lora_name, state, metadata)
        (chain,) = loader().load_motion_lora(name=ade_name, strength=strength, prev_motion_lora=prev_motion_lora)
        return io.NodeOutput(chain, info)
