"""Merge Motion LoRAs: bake a chain of motion LoRAs and their strengths into one ADE-format file."""
from __future__ import annotations

from pathlib import Path

from comfy_api.v0_0_2 import io, ui

from ..sma.errors import SMAInputError
from ..sma.lora import load_motion_lora, save_motion_lora
from ..sma.lora.adapters import MAX_RANK
from ..sma.lora.merge import LoRASource, merge_sources
from ..sma.paths import safe_output_path
from .common import CATEGORY, motion_lora_folder, user_errors
from .lora import MotionLora, ade_lora_loader, lora_path


class MergeMotionLoRAs(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SMA_MergeMotionLoRAs",
            display_name="Merge Motion LoRAs (SMA)",
            category=f"{CATEGORY}/lora",
            description=(
                "Merges every motion LoRA of a chain (Apply Motion LoRA or AnimateDiff-Evolved's Load AnimateDiff LoRA, "
                "linked through prev_motion_lora) into one file, each weighted by its strength: the merged file at "
                "strength 1 moves like the chain. rank 0 merges exactly (the ranks add up); a rank compresses each "
                "layer with an SVD and reports the error. Saved into models/animatediff_motion_lora."),
            is_output_node=True,
            inputs=[
                MotionLora.Input("motion_lora", tooltip="The chain to merge; each LoRA's strength is its weight."),
                io.String.Input("lora_name", default="sma_merged",
                                tooltip="File name of the merged LoRA (saved as <name>.safetensors; an existing file "
                                        "of that name is replaced)."),
                io.Int.Input("rank", default=0, min=0, max=MAX_RANK,
                             tooltip="0 = exact merge (rank = the sum of the ranks). Otherwise compress every layer to "
                                     "this rank; the summary gives the relative error that costs."),
            ],
            outputs=[
                MotionLora.Output(display_name="motion_lora", tooltip="The merged LoRA at strength 1.0."),
                io.String.Output(display_name="lora_name", tooltip="The saved file, as listed in animatediff_motion_lora."),
                io.String.Output(display_name="summary", tooltip="Sources, ranks and the relative error of the merge."),
            ],
        )

    @classmethod
    def execute(cls, motion_lora, lora_name: str, rank: int) -> io.NodeOutput:
        loader = ade_lora_loader()
        with user_errors("Merge Motion LoRAs"):
            entries = list(getattr(motion_lora, "loras", None) or [])
            if not entries:
                raise SMAInputError("the motion_lora chain is empty: link Apply Motion LoRA nodes into it.")
            out_path = safe_output_path(motion_lora_folder(), lora_name)
            sources = []
            for entry in entries:
                path = Path(lora_path(entry.name))
                if path.resolve() == out_path.resolve():
                    raise SMAInputError(f"{out_path.name} is in the chain it would replace; pick another lora_name.")
                state, metadata = load_motion_lora(path)
                sources.append(LoRASource(name=entry.name, state=state, weight=float(entry.strength), metadata=metadata))
            merged = merge_sources(sources, rank or None)
            save_motion_lora(out_path, merged.state, {**merged.metadata, "name": out_path.stem})
        (chain,) = loader().load_motion_lora(name=out_path.name, strength=1.0)
        summary = merged.summary()
        return io.NodeOutput(chain, out_path.name, summary, ui=ui.PreviewText(summary))
