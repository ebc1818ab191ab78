"""Read reference clips (streaming, PyAV), bring frames to a latent-friendly size, write small clips.

Frame selection follows VideoHelperSuite's Load Video options, applied in this order:

1. ``force_rate`` (0 = the source rate): frames are dropped or repeated so the clip has this rate.
   Resampling uses the decoded timestamps: output frame ``k`` (time ``k / force_rate`` after the first
   frame) shows the source frame on screen at that time.
2. ``skip_first_frames``: frames discarded from the start (counted after step 1).
3. ``select_every_nth``: keep the first of every ``n`` remaining frames.
4. ``frame_load_cap`` (0 = all): stop after this many kept frames (an upper bound, as in VHS; pass
   ``min_frames`` to :func:`read_video` to require a count).

The effective rate is ``(force_rate or source fps) / select_every_nth``.

Size (``width``, ``height``; 0 = keep, as VHS's ``custom_width`` / ``custom_height``): with both 0 the
source size is kept; with one set the other follows the aspect ratio; with both set the frame is scaled
(aspect kept) to cover that size. The result is then centre-cropped to the requested size rounded *down*
to a multiple of 8 (SD latents are 1/8 of the image), so nothing is stretched. Sizes below 8 px are refused.

Decoding streams: every frame up to the last kept one is decoded (inter-frame codecs need it), but only
kept frames are converted to RGB and resized, one at a time, and decoding stops once ``frame_load_cap``
is reached. Memory holds the kept frames at their output size (twice, briefly, while they are stacked)
plus one source frame.
"""

from __future__ import annotations

import itertools
import logging
import math
import numbers
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import av
import numpy as np
import torch
import torch.nn.functional as F

from .atomic import atomic_write_path
from .errors import SMAInputError

if TYPE_CHECKING:
    from av.container import InputContainer
    from av.video.stream import VideoStream

VIDEO_EXTENSIONS = (".avi", ".gif", ".mkv", ".mov", ".mp4", ".webm")
LATENT_MULTIPLE = 8
# Container per extension for write_video, and the encoders it tries in order.
WRITE_FORMATS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska"}
WRITE_ENCODERS = ("libx264", "libopenh264", "mpeg4")
# A slot of the force_rate grid belongs to the frame on screen at (slot time + this many source
# frame periods): absorbs timestamps rounded by the container (e.g. 1 ms steps in mkv / webm).
_TIMESTAMP_SLACK = 0.2
_RESIZE_CHUNK = 16
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoOptions:
    """How to pick and size the frames of a clip (VideoHelperSuite names; see the module docstring).

    ``frame_load_cap``: most frames to keep, 0 = all. ``skip_first_frames``: frames dropped at the start.
    ``select_every_nth``: keep one frame in ``n`` (>= 1). ``force_rate``: resample to this fps, 0 = source.
    ``width`` / ``height``: output size in px, 0 = keep (or follow the aspect ratio).
    """

    frame_load_cap: int = 0
    skip_first_frames: int = 0
    select_every_nth: int = 1
    force_rate: float = 0.0
    width: int = 0
    height: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise SMAInputError(f"{f.name} must be a number, got {value!r}.")
            if f.name == "force_rate":
                object.__setattr__(self, f.name, float(value))
            elif math.isfinite(value) and value == int(value):
                object.__setattr__(self, f.name, int(value))
            else:
                raise SMAInputError(f"{f.name} must be a whole number, got {value!r}.")
        for name in ("frame_load_cap", "skip_first_frames", "width", "height"):
            if getattr(self, name) < 0:
                raise SMAInputError(f"{name} must be 0 or more, got {getattr(self, name)}.")
        if self.select_every_nth < 1:
            raise SMAInputError(
                f"select_every_nth must be 1 or more (1 keeps every frame), got {self.select_every_nth}."
            )
        if not math.isfinite(self.force_rate) or self.force_rate < 0:
            raise SMAInputError(f"force_rate must be 0 (source rate) or a positive fps, got {self.force_rate}.")


@dataclass
class VideoClip:
    """Frames read from a file. ``frames``: ``[F, H, W, 3]`` float32 in 0..1 (ComfyUI IMAGE layout).

    ``fps`` is the rate of ``frames`` (after force_rate and select_every_nth); ``source_frame_count``
    is None when neither the header nor a full decode told it.
    """

    frames: torch.Tensor
    fps: float
    source_fps: float
    source_frame_count: int | None
    source_size: tuple[int, int]
    path: str


class Geometry(NamedTuple):
    """How a ``source_width x source_height`` frame becomes ``width x height``: scale to
    ``resize_width x resize_height``, then crop at (``crop_left``, ``crop_top``)."""

    source_width: int
    source_height: int
    resize_width: int
    resize_height: int
    width: int
    height: int
    crop_left: int
    crop_top: int

    @property
    def resizes(self) -> bool:
        return (self.resize_width, self.resize_height) != (self.source_width, self.source_height)


def target_geometry(source_width: int, source_height: int, width: int = 0, height: int = 0,
                    multiple: int = LATENT_MULTIPLE) -> Geometry:
    """Plan the scale + centre crop that gives ``width x height`` (0 = keep / follow the aspect
    ratio) rounded down to ``multiple``; the scale keeps the aspect ratio and covers the target."""
    if source_width < 1 or source_height < 1:
        raise SMAInputError(f"the frames have no size ({source_width}x{source_height}).")
    if width < 0 or height < 0 or multiple < 1:
        raise SMAInputError(f"width and height must be 0 (keep) or more, got {width}x{height}.")
    if width == 0 and height == 0:
        want_w, want_h = Fraction(source_width), Fraction(source_height)
    elif height == 0:
        want_w, want_h = Fraction(width), Fraction(source_height * width, source_width)
    elif width == 0:
        want_w, want_h = Fraction(source_width * height, source_height), Fraction(height)
    else:
        want_w, want_h = Fraction(width), Fraction(height)
    out_w, out_h = (math.floor(v / multiple) * multiple for v in (want_w, want_h))
    if out_w < multiple or out_h < multiple:
        raise SMAInputError(
            f"target size {float(want_w):g}x{float(want_h):g} px (from a {source_width}x{source_height} source, "
            f"width={width}, height={height}) is smaller than {multiple} px once rounded down to a multiple of "
            f"{multiple}; ask for at least {multiple} px on each side."
        )
    scale = max(want_w / source_width, want_h / source_height)
    resize_w = max(out_w, round(source_width * scale))
    resize_h = max(out_h, round(source_height * scale))
    return Geometry(source_width, source_height, resize_w, resize_h, out_w, out_h,
                    (resize_w - out_w) // 2, (resize_h - out_h) // 2)


def _apply_geometry(frames: torch.Tensor, geometry: Geometry, out: torch.Tensor) -> None:
    """Resize (bilinear, antialiased) and crop ``frames [F, H, W, 3]`` into ``out [F, h, w, 3]``."""
    g = geometry
    for start in range(0, frames.shape[0], _RESIZE_CHUNK):
        chunk = frames[start:start + _RESIZE_CHUNK].to(torch.float32)
        if g.resizes:
            chunk = F.interpolate(chunk.permute(0, 3, 1, 2), size=(g.resize_height, g.resize_width),
                                  mode="bilinear", antialias=True, align_corners=False).permute(0, 2, 3, 1)
        out[start:start + chunk.shape[0]] = chunk[:, g.crop_top:g.crop_top + g.height,
                                                  g.crop_left:g.crop_left + g.width]
    out.clamp_(0.0, 1.0)


def prepare_frames(frames: torch.Tensor, width: int = 0, height: int = 0,
                   multiple: int = LATENT_MULTIPLE) -> torch.Tensor:
    """Scale and centre-crop ``frames [F, H, W, 3]`` (0..1) to ``[F, h, w, 3]`` float32, ``h``, ``w``
    multiples of ``multiple`` (see :func:`target_geometry`). Returns the input (as float32) when
    nothing changes."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
        raise SMAInputError(f"expected frames shaped [F, H, W, 3] with F >= 1, got {list(frames.shape)}.")
    geometry = target_geometry(frames.shape[2], frames.shape[1], width, height, multiple)
    if (geometry.width, geometry.height) == (geometry.source_width, geometry.source_height):
        return frames.to(torch.float32)
    out = torch.empty(frames.shape[0], geometry.height, geometry.width, 3, dtype=torch.float32,
                      device=frames.device)
    _apply_geometry(frames, geometry, out)
    return out


# --- reading ---------------------------------------------------------------------------------------

def _check_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.is_file():
        what = "is a folder, not a video file" if p.is_dir() else "does not exist"
        raise SMAInputError(f"video file {str(p)!r} {what}.")
    if p.suffix.lower() not in VIDEO_EXTENSIONS:
        raise SMAInputError(
            f"unsupported video file type {p.suffix or '(no extension)'!r} for {p.name}; "
            f"allowed: {', '.join(VIDEO_EXTENSIONS)}."
        )
    return p


def _not_decodable(p: Path, error: BaseException) -> SMAInputError:
    return SMAInputError(f"could not decode {p.name}: the file is corrupt or not a video ({error}).")


@contextmanager
def _open_video(path: str | os.PathLike) -> Iterator[tuple[Path, InputContainer, VideoStream]]:
    """Open ``path`` and yield (path, container, first video stream); PyAV errors become SMAInputError."""
    p = _check_path(path)
    try:
        container = av.open(str(p), mode="r", metadata_errors="ignore")
    except (av.error.FFmpegError, UnicodeDecodeError) as error:
        raise _not_decodable(p, error) from error
    with container:
        if not container.streams.video:
            kinds = ", ".join(sorted({s.type for s in container.streams})) or "none"
            raise SMAInputError(f"{p.name} has no video stream (streams found: {kinds}).")
        yield p, container, container.streams.video[0]


def _stream_fps(p: Path, stream: VideoStream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return float(rate)
    raise SMAInputError(f"{p.name} declares no frame rate; re-encode it (e.g. ffmpeg -i in -r 24 out.mp4).")


def _rgb(frame: av.VideoFrame) -> np.ndarray:
    """One decoded frame as ``[H, W, 3]`` uint8 RGB (the only place frames become arrays)."""
    return frame.to_ndarray(format="rgb24")


def _decode(container: InputContainer, stream: VideoStream) -> Iterator[av.VideoFrame]:
    """Decoded frames in presentation order, one at a time."""
    stream.thread_type = "AUTO"
    yield from container.decode(stream)


def _on_rate_grid(timed: Iterable[tuple[float, av.VideoFrame]], rate: float,
                  period: float) -> Iterator[av.VideoFrame]:
    """Resample ``(time, frame)`` pairs to ``rate`` fps: output ``k`` is the frame on screen at
    ``k / rate`` s after the first frame (frames repeat or drop); a frame due within a fifth of a source
    period counts as on screen (rounded timestamps). ``period``: nominal source frame time in s.
    Looks one frame ahead (to know when a frame leaves the screen)."""
    slack = _TIMESTAMP_SLACK * period
    slot, previous, start = 0, None, 0.0
    for time, frame in timed:
        if previous is None:
            start = time
        else:
            while slot / rate + slack < time - start:
                yield previous
                slot += 1
        previous = frame
        last = time - start
    if previous is not None:
        while slot / rate + slack < last + period:
            yield previous
            slot += 1


class _Counted:
    """Iterate ``items``, counting them and noting whether the end was reached."""

    def __init__(self, items: Iterable) -> None:
        self._items, self.count, self.exhausted = iter(items), 0, False

    def __iter__(self) -> Iterator:
        for item in self._items:
            self.count += 1
            yield item
        self.exhausted = True


def _timed(frames: Iterable[av.VideoFrame], fps: float) -> Iterator[tuple[float, av.VideoFrame]]:
    """Pair frames with their time in s (the frame index / fps when the frame has no timestamp)."""
    for index, frame in enumerate(frames):
        yield (float(frame.time) if frame.pts is not None and frame.time is not None else index / fps), frame


def read_video(path: str | os.PathLike, options: VideoOptions | None = None, *,
               min_frames: int = 2) -> VideoClip:
    """Decode the frames ``options`` select from ``path``, streaming; ``frames``: ``[F, H, W, 3]``
    float32 0..1. Raises SMAInputError when the file is missing / unsupported / corrupt, or the
    options leave fewer than ``min_frames`` frames."""
    options = options or VideoOptions()
    if min_frames < 1:
        raise SMAInputError(f"min_frames must be 1 or more, got {min_frames}.")
    if 0 < options.frame_load_cap < min_frames:
        raise SMAInputError(
            f"frame_load_cap={options.frame_load_cap} keeps fewer frames than the {min_frames} needed; "
            f"set it to {min_frames} or more (0 = all frames)."
        )
    with _open_video(path) as (p, container, stream):
        source_fps = _stream_fps(p, stream)
        header_frames = stream.frames if stream.frames > 0 else None
        ctx = stream.codec_context
        geometry = (target_geometry(ctx.width, ctx.height, options.width, options.height)
                    if ctx.width and ctx.height else None)
        decoded = _Counted(_decode(container, stream))
        kept: list[torch.Tensor] = []
        previous = None
        try:
            for frame in _selected(decoded, options, source_fps):
                if frame is not previous:  # force_rate may repeat a frame: convert it once
                    if geometry is None or (frame.width, frame.height) != geometry[:2]:
                        geometry = _geometry_for(frame, geometry, options)
                    tensor, previous = _to_tensor(frame, geometry), frame
                kept.append(tensor)
        except av.error.FFmpegError as error:
            raise SMAInputError(
                f"could not decode {p.name} after {decoded.count} frame(s): the file is corrupt or not a video "
                f"({error})."
            ) from error
    if decoded.exhausted and header_frames and decoded.count < header_frames:
        log.warning("%s: decoded %d of the %d frames its header lists; the file may be truncated.",
                    p.name, decoded.count, header_frames)
    if len(kept) < min_frames:
        raise SMAInputError(_too_few_message(p, options, len(kept), decoded.count, min_frames))
    return VideoClip(
        frames=torch.stack(kept),
        fps=(options.force_rate or source_fps) / options.select_every_nth,
        source_fps=source_fps,
        source_frame_count=decoded.count if decoded.exhausted else header_frames,
        source_size=(geometry.source_width, geometry.source_height),
        path=str(p),
    )


def select_frames(frames: torch.Tensor, options: VideoOptions | None = None, fps: float | None = None, *,
                  min_frames: int = 2) -> torch.Tensor:
    """Apply ``options`` (selection, then size) to frames already in memory: ``[F, H, W, 3]`` ->
    ``[F', h, w, 3]`` float32. ``fps`` (the frames' rate) is needed only for ``force_rate``. Raises
    SMAInputError when fewer than ``min_frames`` frames are left."""
    options = options or VideoOptions()
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise SMAInputError(f"expected frames shaped [F, H, W, 3], got {list(frames.shape)}.")
    if options.force_rate and not fps:
        raise SMAInputError("force_rate needs the frame rate of the input frames; set force_rate to 0 "
                            "or give the frames' fps.")
    indices = list(_selected(range(frames.shape[0]), options, fps or 1.0, timed=lambda items, rate: (
        (index / rate, index) for index in items)))
    if len(indices) < min_frames:
        raise SMAInputError(
            f"the options (skip_first_frames={options.skip_first_frames}, select_every_nth="
            f"{options.select_every_nth}, frame_load_cap={options.frame_load_cap}, force_rate="
            f"{options.force_rate:g}) leave {len(indices)} of the {frames.shape[0]} input frame(s), but at "
            f"least {min_frames} are needed.")
    return prepare_frames(frames[indices], options.width, options.height)


def _selected(frames: Iterable, options: VideoOptions, fps: float, timed=None) -> Iterator:
    """The frames ``options`` keep, in order; pulls no frame past the last one kept. ``timed(frames, fps)``
    pairs frames with their time in s (default: decoded timestamps)."""
    timeline = frames
    if options.force_rate:
        timeline = _on_rate_grid((timed or _timed)(frames, fps), options.force_rate, 1.0 / fps)
    picked = itertools.islice(timeline, options.skip_first_frames, None, options.select_every_nth)
    return itertools.islice(picked, options.frame_load_cap or None)


def _to_tensor(frame: av.VideoFrame, geometry: Geometry) -> torch.Tensor:
    """One decoded frame, resized and cropped: ``[h, w, 3]`` float32 0..1."""
    rgb = torch.from_numpy(_rgb(frame)).to(torch.float32).div_(255.0)
    out = torch.empty(1, geometry.height, geometry.width, 3)
    _apply_geometry(rgb[None], geometry, out)
    return out[0]


def _geometry_for(frame: av.VideoFrame, previous: Geometry | None, options: VideoOptions) -> Geometry:
    """Geometry for a frame whose size differs from the stream's: keep the output size already chosen."""
    if previous is None:
        return target_geometry(frame.width, frame.height, options.width, options.height)
    return target_geometry(frame.width, frame.height, previous.width, previous.height)


def _too_few_message(p: Path, o: VideoOptions, kept: int, decoded: int, needed: int) -> str:
    return (
        f"{p.name}: the options (skip_first_frames={o.skip_first_frames}, select_every_nth={o.select_every_nth}, "
        f"frame_load_cap={o.frame_load_cap}, force_rate={o.force_rate:g}) leave {kept} frame(s) of the "
        f"{decoded} in the video, but at least {needed} are needed. Lower skip_first_frames or "
        f"select_every_nth, raise force_rate, or use a longer clip."
    )


# --- writing ---------------------------------------------------------------------------------------

def _encoder_available(name: str) -> bool:
    try:
        av.codec.Codec(name, "w")
    except Exception:  # PyAV raises its UnknownCodecError (module path varies across versions)
        return False
    return True


def _pick_encoder() -> str:
    for name in WRITE_ENCODERS:
        if _encoder_available(name):
            return name
    raise SMAInputError(f"this PyAV build has none of the video encoders {', '.join(WRITE_ENCODERS)}.")


def write_video(path: str | os.PathLike, frames: torch.Tensor, fps: float) -> str:
    """Write ``frames [F, H, W, 3]`` (0..1; H, W even) to ``path`` (.mp4 / .mov / .mkv) atomically
    with H.264 (yuv420p), or MPEG-4 Part 2 where no H.264 encoder exists. Returns the encoder used."""
    p = Path(path)
    container_format = WRITE_FORMATS.get(p.suffix.lower())
    if container_format is None:
        raise SMAInputError(f"write_video writes {', '.join(WRITE_FORMATS)} files, not {p.suffix or p.name!r}.")
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
        raise SMAInputError(f"expected frames shaped [F, H, W, 3] with F >= 1, got {list(frames.shape)}.")
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise SMAInputError(f"frame size {width}x{height} must be even for yuv420p video; crop or pad it.")
    if not (math.isfinite(fps) and fps > 0):
        raise SMAInputError(f"fps must be positive, got {fps}.")
    encoder = _pick_encoder()
    rate = Fraction(fps).limit_denominator(10000)
    with atomic_write_path(p, suffix=p.suffix) as tmp, \
            av.open(str(tmp), mode="w", format=container_format) as container:
        stream = container.add_stream(encoder, rate=rate, options={"crf": "18"} if "264" in encoder else {})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if "264" not in encoder:
            stream.bit_rate = max(1_000_000, int(width * height * float(rate) * 2))
        for frame in frames:
            rgb = (frame.detach().to("cpu", torch.float32).clamp(0, 1) * 255.0).round().to(torch.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb.numpy(), format="rgb24")))
        container.mux(stream.encode(None))
    return encoder
