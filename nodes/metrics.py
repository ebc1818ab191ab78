"""Motion Fidelity: how closely a generated clip's motion follows the reference (the numbers the trainer logs)."""
from __future__ import annotations

from comfy_api.v0_0_2 import io, ui

from ..sma.errors import SMAInputError
from ..sma.metrics import motion_fidelity
from .common import user_errors
from .spectra import ANALYSIS_CATEGORY, pick_clip


class MotionFidelity(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SMA_MotionFidelity",
            display_name="Motion Fidelity (SMA)",
            category=ANALYSIS_CATEGORY,
            description=(
                "Compares the motion of two clips with the same number of frames (the generated clip is resized to the "
                "reference's size if needed): the cosine between their frame-to-frame motion (1 = same motion, "
                "-1 = opposite) and SMA's wavelet (global) and Fourier (local) distances (0 = identical)."),
            inputs=[
                io.Image.Input("reference", optional=True,
                               tooltip="The reference clip's frames [F, H, W, 3], at least 3. Or use reference_latent."),
                io.Image.Input("generated", optional=True,
                               tooltip="The clip to measure, same frame count. Or use generated_latent."),
                io.Latent.Input("reference_latent", optional=True,
                                tooltip="The reference as latents (frames in the batch), instead of reference."),
                io.Latent.Input("generated_latent", optional=True,
                                tooltip="The generated clip as latents, instead of generated."),
            ],
            outputs=[
                io.Float.Output(display_name="cosine", tooltip="Mean motion cosine over frame pairs, -1..1 (1 best)."),
                io.Float.Output(display_name="global_distance",
                                tooltip="SMA wavelet distance of the motion over time (0 best)."),
                io.Float.Output(display_name="local_distance",
                                tooltip="SMA Fourier distance of the motion within frames (0 best)."),
                io.String.Output(display_name="summary", tooltip="The numbers in words."),
            ],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, reference=None, generated=None, reference_latent=None, generated_latent=None) -> io.NodeOutput:
        with user_errors("Motion Fidelity"):
            ref = pick_clip(reference, reference_latent, "reference", "reference_latent")
            gen = pick_clip(generated, generated_latent, "generated", "generated_latent")
            if ref is None or gen is None:
                missing = " and ".join(n for n, c in (("reference", ref), ("generated", gen)) if c is None)
                raise SMAInputError(f"connect {missing} (IMAGE, or the matching _latent input)")
            result = motion_fidelity(ref, gen, layout="channels_first")
        summary = result.summary()
        return io.NodeOutput(result.cosine, result.global_distance, result.local_distance, summary,
                             ui=ui.PreviewText(summary))
