"""Load Reference Video: a clip from ComfyUI's input folder (or an IMAGE / VIDEO input) as frames."""
from __future__ import annotations

import os

import folder_paths
from comfy_api.v0_0_2 import io

from ..sma.errors import SMAInputError
from ..sma.video import VIDEO_EXTENSIONS, VideoOptions, read_video, select_frames
from .common import CATEGORY, user_errors

NO_FILE = "(use the images / video input)"


def _input_videos() -> list[str]:
    folder = folder_paths.get_input_directory()
    names = [n for n in os.listdir(folder) if os.path.isfile(os.path.join(folder, n))
             and os.path.splitext(n)[1].lower() in VIDEO_EXTENSIONS] if os.path.isdir(folder) else []
    return [NO_FILE, *sorted(names)]


class LoadReferenceVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SMA_LoadReferenceVideo",
            display_name="Load Reference Video (SMA)",
            category=f"{CATEGORY}/video",
            description=(
                "Loads the reference clip whose motion you want to learn: decodes only the frames you select "
                "(streaming), resizes and centre-crops them to a multiple of 8. Takes a file from ComfyUI's input "
                "folder (mp4, webm, mov, mkv, gif, avi; upload with the button) or frames from an IMAGE / VIDEO input."),
            inputs=[
                io.Combo.Input("video", options=_input_videos(), upload=io.UploadType.video,
                               tooltip="Video file in ComfyUI's input folder. Ignored when images or video is connected."),
                io.Int.Input("frame_load_cap", default=16, min=0, max=4096,
                             tooltip="At most this many frames (0 = all). AnimateDiff v2/v3 see 32 frames at most "
                                     "(v1: 24); 16 is the usual training length."),
                io.Int.Input("skip_first_frames", default=0, min=0, max=100000,
                             tooltip="Frames dropped from the start (after force_rate)."),
                io.Int.Input("select_every_nth", default=1, min=1, max=1000,
                             tooltip="Keep every n-th frame: 2 halves the frame rate and doubles the motion per frame."),
                io.Float.Input("force_rate", default=0.0, min=0.0, max=240.0, step=0.5,
                               tooltip="Resample to this many frames per second (0 = the source rate)."),
                io.Int.Input("width", default=512, min=0, max=4096, step=8,
                             tooltip="Output width in pixels (0 = follow height / keep). Frames are scaled to cover "
                                     "width x height and centre-cropped to a multiple of 8."),
                io.Int.Input("height", default=0, min=0, max=4096, step=8,
                             tooltip="Output height in pixels (0 = follow width / keep the aspect ratio)."),
                io.Image.Input("images", optional=True,
                               tooltip="Frames from another node, used instead of the file."),
                io.Video.Input("video_input", optional=True,
                               tooltip="A core VIDEO (e.g. from Load Video), used instead of the file."),
            ],
            outputs=[
                io.Image.Output(display_name="frames", tooltip="The selected frames [F, H, W, 3]."),
                io.Int.Output(display_name="frame_count"),
                io.Float.Output(display_name="fps", tooltip="Frame rate after force_rate / select_every_nth."),
            ],
        )

    @classmethod
    def execute(cls, video: str, frame_load_cap: int, skip_first_frames: int, select_every_nth: int,
                force_rate: float, width: int, height: int, images=None, video_input=None) -> io.NodeOutput:
        with user_errors("Load Reference Video"):
            options = VideoOptions(frame_load_cap=frame_load_cap, skip_first_frames=skip_first_frames,
                                   select_every_nth=select_every_nth, force_rate=force_rate,
                                   width=width, height=height)
            if images is not None or video_input is not None:
                fps = None
                if video_input is not None:
                    components = video_input.get_components()
                    images, fps = components.images, float(components.frame_rate)
                frames = select_frames(images[..., :3], options, fps, min_frames=max(2, frame_load_cap))
                fps = (force_rate or fps or 0.0) / select_every_nth
            else:
                if video == NO_FILE:
                    raise SMAInputError("pick a video file or connect images / video_input.")
                clip = read_video(folder_paths.get_annotated_filepath(video), options, min_frames=max(2, frame_load_cap))
                frames, fps = clip.frames, clip.fps
        return io.NodeOutput(frames, frames.shape[0], float(fps))

    @classmethod
    def fingerprint_inputs(cls, video: str, **kwargs):
        if video == NO_FILE:
            return ""
        path = folder_paths.get_annotated_filepath(video)
        return os.path.getmtime(path) if os.path.isfile(path) else ""

    @classmethod
    def validate_inputs(cls, video: str):  # only ``video``: with **kwargs ComfyUI skips its own range checks
        if video != NO_FILE and not folder_paths.exists_annotated_filepath(video):
            return f"video file not found in the input folder: {video}"
        return True
