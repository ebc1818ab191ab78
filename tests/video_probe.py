"""Container facts of a video file without decoding it, for tests that check what was written."""
from __future__ import annotations

import os

import av

from sma.video import _open_video, _stream_fps


def probe_video(path: str | os.PathLike) -> dict:
    """Container facts without decoding: ``width``, ``height``, ``fps``, ``frames``, ``frames_exact``
    (False when ``frames`` is estimated from duration x fps, or None if unknown), ``duration`` (s or
    None), ``codec``, ``container``."""
    with _open_video(path) as (p, container, stream):
        fps = _stream_fps(p, stream)
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        else:
            duration = None
        frames, exact = (stream.frames, True) if stream.frames > 0 else (None, False)
        if frames is None and duration is not None:
            frames = round(duration * fps)
        return {
            "width": stream.codec_context.width,
            "height": stream.codec_context.height,
            "fps": fps,
            "frames": frames,
            "frames_exact": exact,
            "duration": duration,
            "codec": stream.codec_context.name,
            "container": container.format.name,
        }
