"""Visualize Motion Spectra: the wavelet and Fourier views of a clip's motion that SMA aligns, as an image."""
from __future__ import annotations

import torch
from comfy_api.v0_0_2 import io, ui

from ..sma.errors import SMAInputError
from ..sma.metrics import as_video
from ..sma.viz import as_image_batch, spectra_panel
from .common import CATEGORY, user_errors

ANALYSIS_CATEGORY = f"{CATEGORY}/analysis"


def pick_clip(image: torch.Tensor | None, latent: dict | None, image_name: str, latent_name: str) -> torch.Tensor | None:
    """The clip connected to an IMAGE / LATENT input pair as ``[F, C, H, W]`` float32, None if neither.

    IMAGE is ``[F, H, W, 3]``; LATENT is ComfyUI's dict whose ``samples`` are ``[F, 4, h, w]`` (AnimateDiff
    puts the frames in the batch). Both connected is refused, so it is always clear which one is measured.
    """
    if image is not None and latent is not None:
        raise SMAInputError(f"connect either {image_name} or {latent_name}, not both")
    if image is not None:
        return as_video(image, "channels_last", image_name)
    if latent is not None:
        return as_video(latent["samples"], "channels_first", latent_name)
    return None


class VisualizeSpectra(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SMA_VisualizeSpectra",
            display_name="Visualize Motion Spectra (SMA)",
            category=ANALYSIS_CATEGORY,
            description=(
                "Draws what Spectral Motion Alignment compares: the wavelet scalogram of the motion over time, the 2-D "
                "amplitude and phase spectra of the frame-to-frame motion, and the motion energy per frame pair. Connect a "
                "second clip to compare the two side by side on the same colour scales (e.g. the reference and a "
                "generation with the trained motion LoRA)."),
            inputs=[
                io.Image.Input("video", optional=True,
                               tooltip="Frames of the clip [F, H, W, 3], at least 3. Connect this or latent."),
                io.Latent.Input("latent", optional=True,
                                tooltip="Or the clip's latents (frames in the batch), as the trainer sees them."),
                io.Image.Input("compare_video", optional=True,
                               tooltip="Optional second clip shown beside the first (any size / length)."),
                io.Latent.Input("compare_latent", optional=True, tooltip="Or the second clip's latents."),
                io.String.Input("label", default="reference", tooltip="Title of the first clip's column."),
                io.String.Input("compare_label", default="generated", tooltip="Title of the second clip's column."),
            ],
            outputs=[
                io.Image.Output(display_name="panel", tooltip="The drawing as one image [1, H, W, 3]."),
            ],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, label: str = "reference", compare_label: str = "generated", video=None, latent=None,
                compare_video=None, compare_latent=None) -> io.NodeOutput:
        with user_errors("Visualize Motion Spectra"):
            clip = pick_clip(video, latent, "video", "latent")
            if clip is None:
                raise SMAInputError("connect a clip to video (IMAGE) or latent (LATENT)")
            other = pick_clip(compare_video, compare_latent, "compare_video", "compare_latent")
            panel = as_image_batch(spectra_panel(clip, other, labels=(label, compare_label), layout="channels_first"))
        return io.NodeOutput(panel, ui=ui.PreviewImage(panel, cls=cls))
