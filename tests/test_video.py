"""Reading reference clips: containers, VHS-style frame selection, resize + centre crop, streaming,
errors; writing clips. Every clip is generated here (frame k is a uniform grey that encodes k)."""

from __future__ import annotations

import fractions
import logging
import math
import weakref
from pathlib import Path

import av
import numpy as np
import pytest
import torch

import sma.video as video
from sma.errors import SMAInputError
from sma.video import VIDEO_EXTENSIONS, VideoOptions, prepare_frames, read_video, write_video
from video_probe import probe_video

N_FRAMES, HEIGHT, WIDTH = 24, 48, 64
LEVEL0, LEVEL_STEP = 20, 10  # frame k is grey 20 + 10 k (codec errors here stay below 4 levels)

# (extension, encoder, pixel format, fps): one writer per container, straight through PyAV.
CONTAINERS = [
    ("mp4", "libx264", "yuv420p", 30),
    ("webm", "libvpx-vp9", "yuv420p", 30),
    ("gif", "gif", "gray", 25),  # gif delays are in 1/100 s: 25 fps is exact
    ("avi", "mpeg4", "yuv420p", 30),
    ("mkv", "ffv1", "yuv420p", 30),
    ("mov", "mjpeg", "yuvj420p", 30),
]


def index_frames(n: int = N_FRAMES, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """``[n, H, W, 3]`` uint8, frame k a uniform grey encoding k."""
    levels = LEVEL0 + LEVEL_STEP * np.arange(n, dtype=np.uint8)
    return np.broadcast_to(levels[:, None, None, None], (n, height, width, 3)).copy()


def indices(frames: torch.Tensor) -> list[int]:
    """Decode the frame indices burned in by ``index_frames`` from ``[F, H, W, 3]`` 0..1 frames."""
    return [round((float(m) * 255 - LEVEL0) / LEVEL_STEP) for m in frames.double().mean(dim=(1, 2, 3))]


def encoder_exists(name: str) -> bool:
    try:
        av.codec.Codec(name, "w")
    except Exception:
        return False
    return True


def write_with_pyav(path: Path, frames: np.ndarray, fps: int, encoder: str, pix_fmt: str) -> Path:
    """Encode ``frames [F, H, W, 3]`` uint8 with PyAV directly (independent of sma.video.write_video)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(encoder, rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        if encoder == "mpeg4":
            stream.bit_rate = 2_000_000
        for rgb in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode(None))
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, tuple[Path, int]]:
    """One 24-frame index clip per container whose encoder exists: ``{ext: (path, fps)}``."""
    folder = tmp_path_factory.mktemp("clips")
    made = {}
    for ext, encoder, pix_fmt, fps in CONTAINERS:
        if encoder_exists(encoder):
            made[ext] = (write_with_pyav(folder / f"index.{ext}", index_frames(), fps, encoder, pix_fmt), fps)
    return made


def clip(clips: dict, ext: str) -> tuple[Path, int]:
    if ext not in clips:
        encoder = next(c[1] for c in CONTAINERS if c[0] == ext)
        pytest.skip(f"this PyAV/FFmpeg build has no {encoder} encoder to make a .{ext} clip")
    return clips[ext]


@pytest.fixture(scope="module")
def mp4(clips) -> Path:
    return clip(clips, "mp4")[0]


# --- containers ------------------------------------------------------------------------------------

@pytest.mark.parametrize("ext", [c[0] for c in CONTAINERS])
def test_every_container_reads_all_frames_in_order(clips, ext):
    path, fps = clip(clips, ext)
    result = read_video(path)
    assert result.frames.shape == (N_FRAMES, HEIGHT, WIDTH, 3)
    assert result.frames.dtype == torch.float32
    assert 0.0 <= float(result.frames.min()) and float(result.frames.max()) <= 1.0
    assert indices(result.frames) == list(range(N_FRAMES))
    assert result.fps == pytest.approx(fps) and result.source_fps == pytest.approx(fps)
    assert result.source_frame_count == N_FRAMES
    assert result.source_size == (WIDTH, HEIGHT) and result.path == str(path)


@pytest.mark.parametrize("ext", [c[0] for c in CONTAINERS])
def test_written_clips_declare_their_size_rate_and_length(clips, ext):
    path, fps = clip(clips, ext)
    info = probe_video(path)
    assert (info["width"], info["height"]) == (WIDTH, HEIGHT)
    assert info["fps"] == pytest.approx(fps)
    assert info["frames"] == N_FRAMES
    assert info["duration"] == pytest.approx(N_FRAMES / fps, abs=1.5 / fps)


@pytest.mark.parametrize("ext", [c[0] for c in CONTAINERS])
def test_halving_the_rate_keeps_every_other_frame(clips, ext):
    # mkv / webm store times in whole ms (0, 33, 67, ...): the grid must not slip onto odd frames.
    path, fps = clip(clips, ext)
    result = read_video(path, VideoOptions(force_rate=fps / 2))
    assert indices(result.frames) == list(range(0, N_FRAMES, 2))
    assert result.fps == pytest.approx(fps / 2)


def test_doubling_the_rate_shows_every_frame_twice(mp4):
    result = read_video(mp4, VideoOptions(force_rate=60))
    assert indices(result.frames) == [k for k in range(N_FRAMES) for _ in range(2)]
    assert result.fps == 60


def test_force_rate_30_to_20_takes_the_frame_on_screen(mp4):
    # 0.8 s at 20 fps = 16 frames; output k (time k/20) shows source frame floor(k * 30 / 20).
    result = read_video(mp4, VideoOptions(force_rate=20))
    assert indices(result.frames) == [math.floor(k * 30 / 20) for k in range(16)]


# --- selection ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("skip, nth, cap", [
    (5, 1, 0), (0, 3, 0), (0, 1, 4), (3, 4, 4), (2, 5, 0), (7, 2, 100), (0, 30, 0),
])
def test_skip_select_cap_pick_the_vhs_frames(mp4, skip, nth, cap):
    result = read_video(mp4, VideoOptions(skip_first_frames=skip, select_every_nth=nth, frame_load_cap=cap),
                        min_frames=1)
    assert indices(result.frames) == list(range(N_FRAMES))[skip::nth][:cap or None]
    assert result.fps == pytest.approx(30 / nth)


def test_selection_applies_after_force_rate(mp4):
    # force_rate first (0, 2, 4, ...), then skip 1, every 2nd, at most 3 frames.
    result = read_video(mp4, VideoOptions(force_rate=15, skip_first_frames=1, select_every_nth=2, frame_load_cap=3))
    assert indices(result.frames) == list(range(0, N_FRAMES, 2))[1::2][:3]
    assert result.fps == pytest.approx(7.5)


def test_source_frame_count_is_none_when_unknown(clips):
    path, _ = clip(clips, "mkv")  # Matroska headers carry no frame count
    assert read_video(path, VideoOptions(frame_load_cap=3)).source_frame_count is None
    assert read_video(path).source_frame_count == N_FRAMES  # a full decode counts them


# --- size --------------------------------------------------------------------------------------------

def ramps(height: int, width: int) -> torch.Tensor:
    """``[1, H, W, 3]``: R = x / (W - 1), G = y / (H - 1), B = 0.5."""
    ys, xs = torch.meshgrid(torch.arange(height) / (height - 1), torch.arange(width) / (width - 1), indexing="ij")
    return torch.stack([xs, ys, torch.full_like(xs, 0.5)], dim=-1)[None].float()


def test_keep_size_crops_the_centre_to_a_multiple_of_8_without_resampling():
    frames = torch.rand(3, 50, 70, 3)
    out = prepare_frames(frames)
    assert out.shape == (3, 48, 64, 3)
    assert torch.equal(out, frames[:, 1:49, 3:67])  # (50 - 48) // 2 rows, (70 - 64) // 2 columns


def test_cover_and_centre_crop_is_symmetric():
    frames = ramps(64, 96)
    out = prepare_frames(frames, width=32, height=32)[0]
    assert out.shape == (32, 32, 3)
    # A centred crop of a linear ramp is symmetric about 0.5: r(j) + r(31 - j) = 1.
    assert torch.allclose(out[:, :, 0] + out[:, :, 0].flip(1), torch.ones(32, 32), atol=1e-5)
    assert torch.allclose(out[:, :, 1] + out[:, :, 1].flip(0), torch.ones(32, 32), atol=1e-5)
    # Scale 0.5 then an 8-px crop each side: the middle 64 of the 96 source columns remain.
    assert float(out[0, 0, 0]) == pytest.approx(16.5 / 95, abs=1e-4)


@pytest.mark.parametrize("source, request_, expected", [
    ((96, 64), (32, 0), (32, 16)),      # width given: height follows the aspect ratio (21.3 -> 16)
    ((96, 64), (0, 40), (56, 40)),      # height given: width 60 -> 56
    ((200, 200), (100, 100), (96, 96)),  # both given: rounded down to a multiple of 8
    ((64, 48), (128, 128), (128, 128)),  # upscaling allowed; the short side covers
])
def test_output_size(source, request_, expected):
    out = prepare_frames(torch.rand(2, source[1], source[0], 3), *request_)
    assert out.shape == (2, expected[1], expected[0], 3)
    assert out.dtype == torch.float32 and 0.0 <= float(out.min()) and float(out.max()) <= 1.0


def test_prepare_frames_converts_dtype_and_keeps_content():
    frames = torch.rand(2, 16, 24, 3, dtype=torch.float64)
    out = prepare_frames(frames)
    assert out.dtype == torch.float32 and torch.allclose(out, frames.float())


def test_read_video_resizes_and_crops(tmp_path):
    # A 70x50 ramp clip: keep size -> centre 64x48 crop; height 24 -> 32x24 (scale 0.48, crop 1 px).
    frames = (ramps(50, 70).expand(4, -1, -1, -1) * 255).round().to(torch.uint8).numpy()
    path = write_with_pyav(tmp_path / "ramp.mkv", frames, 10, "ffv1", "bgr0")  # lossless RGB
    kept = read_video(path).frames
    assert kept.shape == (4, 48, 64, 3)
    assert float(kept[0, 0, 0, 0]) == pytest.approx(3 / 69, abs=0.5 / 255)
    assert float(kept[0, 0, 0, 1]) == pytest.approx(1 / 49, abs=0.5 / 255)
    small = read_video(path, VideoOptions(height=24)).frames
    assert small.shape == (4, 24, 32, 3)
    assert torch.allclose(small[0, :, :, 0] + small[0, :, :, 0].flip(1), torch.ones(24, 32), atol=0.02)


# --- streaming ---------------------------------------------------------------------------------------

def instrument(monkeypatch) -> dict:
    """Count decoded frames and RGB conversions, and the most conversion arrays alive at once."""
    stats = {"decoded": 0, "converted": 0, "most_alive": 0}
    alive: list[weakref.ref] = []
    decode, rgb = video._decode, video._rgb

    def counting_decode(container, stream):
        for frame in decode(container, stream):
            stats["decoded"] += 1
            yield frame

    def tracking_rgb(frame):
        alive[:] = [ref for ref in alive if ref() is not None]
        stats["most_alive"] = max(stats["most_alive"], len(alive))
        array = rgb(frame)
        alive.append(weakref.ref(array))
        stats["converted"] += 1
        return array

    monkeypatch.setattr(video, "_decode", counting_decode)
    monkeypatch.setattr(video, "_rgb", tracking_rgb)
    return stats


def test_only_kept_frames_are_converted_and_decoding_stops_at_the_cap(mp4, monkeypatch):
    stats = instrument(monkeypatch)
    result = read_video(mp4, VideoOptions(skip_first_frames=2, select_every_nth=3, frame_load_cap=5))
    assert indices(result.frames) == [2, 5, 8, 11, 14]
    assert stats["converted"] == 5
    assert stats["decoded"] == 15  # frames 0..14: nothing after the 5th kept frame is decoded
    assert stats["most_alive"] <= 1  # earlier full-size arrays were freed (at most the previous one)


def test_repeated_frames_are_converted_once(mp4, monkeypatch):
    stats = instrument(monkeypatch)
    result = read_video(mp4, VideoOptions(force_rate=60, frame_load_cap=6))
    assert indices(result.frames) == [0, 0, 1, 1, 2, 2]
    assert stats["converted"] == 3
    assert stats["decoded"] <= 4  # one frame of look-ahead to know when a frame leaves the screen


# --- errors ------------------------------------------------------------------------------------------

def test_missing_file(tmp_path):
    with pytest.raises(SMAInputError, match="does not exist"):
        read_video(tmp_path / "nothing.mp4")
    with pytest.raises(SMAInputError, match="is a folder"):
        probe_video(tmp_path)


def test_unsupported_extension_lists_the_allowed_ones(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(SMAInputError) as error:
        read_video(path)
    assert "'.txt'" in str(error.value)
    assert all(ext in str(error.value) for ext in VIDEO_EXTENSIONS)


@pytest.mark.parametrize("content", ["text", "truncated", "empty"])
def test_corrupt_files_are_explained(tmp_path, mp4, content):
    path = tmp_path / f"{content}.mp4"
    if content == "text":
        path.write_text("this is a text file renamed to .mp4\n" * 50)
    elif content == "truncated":
        data = mp4.read_bytes()
        path.write_bytes(data[: len(data) // 2])  # the index (moov) sits at the end: it is cut off
    else:
        path.write_bytes(b"")
    expected = rf"could not decode {content}\.mp4: the file is corrupt or not a video"
    for reader in (read_video, probe_video):
        with pytest.raises(SMAInputError, match=expected):
            reader(path)


def test_truncated_file_with_index_up_front_warns(tmp_path, caplog):
    path = tmp_path / "faststart.mp4"
    with av.open(str(path), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        noise = np.random.default_rng(0).integers(0, 256, (N_FRAMES, HEIGHT, WIDTH, 3), dtype=np.uint8)
        for rgb in noise:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode(None))
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with caplog.at_level(logging.WARNING, logger="sma.video"):
        result = read_video(cut)
    assert 2 <= result.frames.shape[0] < N_FRAMES
    assert result.source_frame_count == result.frames.shape[0]
    assert f"of the {N_FRAMES} frames its header lists; the file may be truncated" in caplog.text


def test_file_without_video_stream(tmp_path):
    path = tmp_path / "sound.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("flac", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1600), np.int16), format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 16000, 0, fractions.Fraction(1, 16000)
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with pytest.raises(SMAInputError, match=r"sound\.mkv has no video stream \(streams found: audio\)"):
        read_video(path)


@pytest.mark.parametrize("options, min_frames, kept", [
    (VideoOptions(skip_first_frames=20, select_every_nth=2), 4, 2),
    (VideoOptions(skip_first_frames=30), 2, 0),
    (VideoOptions(select_every_nth=13), 3, 2),
])
def test_too_few_frames_says_how_many_are_left_and_needed(mp4, options, min_frames, kept):
    with pytest.raises(SMAInputError) as error:
        read_video(mp4, options, min_frames=min_frames)
    message = str(error.value)
    assert f"leave {kept} frame(s) of the {N_FRAMES} in the video" in message
    assert f"at least {min_frames} are needed" in message
    assert f"skip_first_frames={options.skip_first_frames}" in message


def test_cap_below_min_frames_is_refused_before_decoding(mp4):
    with pytest.raises(SMAInputError, match="frame_load_cap=1 keeps fewer frames than the 2 needed"):
        read_video(mp4, VideoOptions(frame_load_cap=1))


@pytest.mark.parametrize("size", [dict(width=4), dict(height=7), dict(width=16)])
def test_target_smaller_than_8_px(mp4, size):
    # width=16 on the 64x48 clip gives height 12 -> 8; on a 64x16 frame it gives 4 (too small).
    if size == dict(width=16):
        with pytest.raises(SMAInputError, match="smaller than 8 px"):
            prepare_frames(torch.rand(1, 16, 64, 3), width=16)
        assert read_video(mp4, VideoOptions(width=16)).frames.shape[1:3] == (8, 16)
    else:
        with pytest.raises(SMAInputError, match="smaller than 8 px"):
            read_video(mp4, VideoOptions(**size))


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(frame_load_cap=-1), "frame_load_cap must be 0 or more"),
    (dict(skip_first_frames=-3), "skip_first_frames must be 0 or more"),
    (dict(select_every_nth=0), "select_every_nth must be 1 or more"),
    (dict(force_rate=-1.0), "force_rate must be 0 (source rate) or a positive fps"),
    (dict(force_rate=float("nan")), "force_rate must be 0 (source rate) or a positive fps"),
    (dict(width=-8), "width must be 0 or more"),
    (dict(skip_first_frames=1.5), "skip_first_frames must be a whole number"),
    (dict(frame_load_cap=True), "frame_load_cap must be a number"),
    (dict(select_every_nth="2"), "select_every_nth must be a number"),
])
def test_nonsense_options(kwargs, fragment):
    with pytest.raises(SMAInputError) as error:
        VideoOptions(**kwargs)
    assert fragment in str(error.value)


def test_whole_floats_become_ints():
    options = VideoOptions(frame_load_cap=4.0, force_rate=np.int64(12))
    assert options.frame_load_cap == 4 and type(options.frame_load_cap) is int
    assert options.force_rate == 12.0 and type(options.force_rate) is float


# --- writing -----------------------------------------------------------------------------------------

def smooth_frames(n: int = 8, height: int = 32, width: int = 48) -> torch.Tensor:
    """``[n, H, W, 3]`` smooth moving colour waves (codec friendly)."""
    t = torch.arange(n)[:, None, None]
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    channels = [0.5 + 0.4 * torch.sin((xs + 2 * t) / 7 + c) * torch.cos((ys - t) / 9 + c) for c in range(3)]
    return torch.stack(channels, dim=-1).float()


def test_write_video_round_trip(tmp_path):
    frames = smooth_frames()
    path = tmp_path / "out.mp4"
    assert write_video(path, frames, fps=12) == "libx264"
    info = probe_video(path)
    assert (info["codec"], info["width"], info["height"], info["frames"]) == ("h264", 48, 32, 8)
    assert info["fps"] == pytest.approx(12)
    back = read_video(path).frames
    assert float((back - frames).abs().mean()) < 0.02
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]  # no temporary file left behind


def test_write_video_falls_back_to_mpeg4(tmp_path, monkeypatch):
    monkeypatch.setattr(video, "_encoder_available", lambda name: name == "mpeg4")
    path = tmp_path / "fallback.mp4"
    assert write_video(path, torch.from_numpy(index_frames(6)).float() / 255, fps=8) == "mpeg4"
    assert probe_video(path)["codec"] == "mpeg4"
    assert indices(read_video(path).frames) == list(range(6))


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "keep.mp4"
    write_video(path, smooth_frames(4), fps=8)
    before = path.read_bytes()
    monkeypatch.setattr(video, "_pick_encoder", lambda: "no-such-encoder")
    with pytest.raises(Exception):
        write_video(path, smooth_frames(6), fps=8)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.mp4"]


@pytest.mark.parametrize("name, frames, fps, fragment", [
    ("odd.mp4", torch.rand(2, 31, 48, 3), 8, "must be even"),
    ("clip.avi", torch.rand(2, 32, 48, 3), 8, "write_video writes .mp4, .mov, .mkv"),
    ("zero.mp4", torch.rand(2, 32, 48, 3), 0, "fps must be positive"),
    ("flat.mp4", torch.rand(32, 48, 3), 8, "expected frames shaped [F, H, W, 3]"),
])
def test_write_video_rejects_bad_input(tmp_path, name, frames, fps, fragment):
    with pytest.raises(SMAInputError) as error:
        write_video(tmp_path / name, frames, fps)
    assert fragment in str(error.value)
    assert list(tmp_path.iterdir()) == []


# --- frames already in memory (IMAGE / VIDEO inputs of the node) ------------------------------------

def test_select_frames_matches_read_video_selection():
    from sma.video import select_frames

    frames = torch.arange(24, dtype=torch.float32).div(23).view(24, 1, 1, 1).expand(24, 16, 24, 3).clone()
    options = VideoOptions(skip_first_frames=2, select_every_nth=3, frame_load_cap=5)
    picked = select_frames(frames, options)
    assert picked.shape == (5, 16, 24, 3)
    assert torch.allclose(picked[:, 0, 0, 0] * 23, torch.tensor([2.0, 5, 8, 11, 14]))
    halved = select_frames(frames, VideoOptions(force_rate=4.0), fps=8.0)
    assert torch.allclose(halved[:, 0, 0, 0] * 23, torch.arange(0, 24, 2, dtype=torch.float32))
    resized = select_frames(frames, VideoOptions(width=12))
    assert resized.shape == (24, 8, 8, 3)


def test_select_frames_errors():
    from sma.video import select_frames

    frames = torch.rand(3, 16, 16, 3)
    with pytest.raises(SMAInputError, match="leave 1 of the 3 input frame"):
        select_frames(frames, VideoOptions(skip_first_frames=2))
    with pytest.raises(SMAInputError, match="force_rate needs the frame rate"):
        select_frames(frames, VideoOptions(force_rate=4.0))
