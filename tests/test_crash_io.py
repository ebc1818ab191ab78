"""Interruptions and failing disks leave no broken file: Ctrl-C (or a ComfyUI cancel) during video decode,
VAE encode and export; a full disk (a real 256 KiB tmpfs, and a patched ENOSPC) and a read-only folder (the
same tmpfs remounted read-only) give a clear message and keep the existing file unchanged.

The tmpfs tests need root (``mount``); CI runs as root. The patched variants run everywhere.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import SafetensorError

from sma.atomic import check_writable
from sma.cli import build_parser, main
from sma.cli import train as train_cmd
from sma.errors import SMAInputError
from sma.lora import ade_lora_key, load_motion_lora, save_motion_lora
from sma.lora import files as lora_files
from sma.lora.validate import motion_lora_layers
from synthetic_clips import moving_shapes_clip
from sma.training import load_checkpoint
from sma.training import checkpoint as ckpt
from sma.video import read_video, write_video
from sma.viz import save_png
from test_cli import TinySource, inputs, need_tokenizer  # noqa: F401 - ``inputs`` is a fixture

TMPFS_BYTES = 256 * 1024


def tiny_lora(rank: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """An attention motion LoRA of the tiny v3 layout (rank 1: 23 KiB of tensors, rank 8: 184 KiB)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for module, (out_features, in_features) in motion_lora_layers((16, 32, 64, 64), 2, has_mid_block=False).items():
        if ".attention_blocks." in module:
            state[ade_lora_key(module, "down")] = torch.randn(rank, in_features, generator=generator).half()
            state[ade_lora_key(module, "up")] = torch.randn(out_features, rank, generator=generator).half() * 0.1
    return state


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB tmpfs (unmounted afterwards); skips where mounting is not allowed."""
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES}", "tmpfs", str(mount)],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {result.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path, leave: int) -> None:
    """Fill the disk of ``folder`` until about ``leave`` bytes are free."""
    free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
    (folder / "filler.bin").write_bytes(b"\0" * max(0, free - leave))


# --- full disk ---------------------------------------------------------------------------------------------

def test_real_full_disk_keeps_every_existing_file(small_disk):
    lora = save_motion_lora(small_disk / "motion.safetensors", tiny_lora(1), {"steps": 1})
    checkpoint = ckpt.save_checkpoint(small_disk / "checkpoint-000001.safetensors", {"lora.a": torch.ones(8)},
                                      {"step": 1})
    frames = moving_shapes_clip(frames=4, height=32, width=32, seed=0).frames
    write_video(small_disk / "clip.mp4", frames, 8.0)
    save_png(np.zeros((8, 8, 3), np.uint8), small_disk / "curve.png")
    before = {name: (small_disk / name).read_bytes() for name in listing(small_disk)}
    fill(small_disk, leave=8 * 1024)
    with pytest.raises(SMAInputError, match=r"not enough disk space to write .*motion\.safetensors .*Nothing was "
                                            r"overwritten"):
        save_motion_lora(lora, tiny_lora(8, seed=1), {"steps": 2})
    with pytest.raises(SMAInputError, match="not enough disk space"):
        ckpt.save_checkpoint(checkpoint, {"lora.a": torch.randn(64 * 1024)}, {"step": 2})
    with pytest.raises(SMAInputError, match="not enough disk space"):
        write_video(small_disk / "clip.mp4", moving_shapes_clip(frames=24, height=128, width=128, seed=1).frames, 8.0)
    with pytest.raises(SMAInputError, match="not enough disk space"):
        save_png(np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8), small_disk / "curve.png")
    (small_disk / "filler.bin").unlink()
    assert listing(small_disk) == sorted(before)  # no temp file left
    assert all((small_disk / name).read_bytes() == data for name, data in before.items())
    assert load_motion_lora(lora)[1]["steps"] == 1 and load_checkpoint(checkpoint)[1]["step"] == 1
    assert read_video(small_disk / "clip.mp4").frames.shape[0] == 4


def test_patched_full_disk_on_checkpoint_and_video(tmp_path, monkeypatch):
    checkpoint = ckpt.save_checkpoint(tmp_path / "checkpoint-000001.safetensors", {"lora.a": torch.ones(8)}, {"step": 1})
    before = checkpoint.read_bytes()

    def disk_full(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(ckpt, "save_file", disk_full)
    with pytest.raises(SMAInputError, match=r"not enough disk space to write .*checkpoint-000001"):
        ckpt.save_checkpoint(checkpoint, {"lora.a": torch.zeros(8)}, {"step": 2})
    assert checkpoint.read_bytes() == before and listing(tmp_path) == [checkpoint.name]


# --- read-only folder ----------------------------------------------------------------------------------------

def test_read_only_folder_is_explained_and_nothing_changes(small_disk, capsys):
    lora = save_motion_lora(small_disk / "motion.safetensors", tiny_lora(1), {"steps": 1})
    before = lora.read_bytes()
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    for write in (lambda: save_motion_lora(lora, tiny_lora(2), {"steps": 2}),
                  lambda: ckpt.save_checkpoint(small_disk / "checkpoint-000002.safetensors", {"a": torch.ones(2)}, {}),
                  lambda: save_png(np.zeros((8, 8, 3), np.uint8), small_disk / "curve.png"),
                  lambda: check_writable(small_disk)):
        with pytest.raises(SMAInputError, match=r"is not writable \(Read-only file system\); pick another output "
                                                r"folder"):
            write()
    assert lora.read_bytes() == before and listing(small_disk) == ["motion.safetensors"]
    # the CLI says so before reading anything large (plan_training only checks that weight files exist)
    assert main(["train", "--checkpoint", str(lora), "--motion-module", str(lora), "--video", "x.mp4",
                 "--out", str(small_disk / "new.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot write ") and "is not writable (Read-only file system)" in err


# --- cancel during decode, encode and export -------------------------------------------------------------------

class Cancelled(Exception):
    """What ComfyUI's Cancel raises inside a node (``InterruptProcessingException``)."""


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, Cancelled])
def test_cancel_during_export_keeps_the_old_files(tmp_path, monkeypatch, interrupt):
    lora = save_motion_lora(tmp_path / "motion.safetensors", tiny_lora(1), {"steps": 1})
    frames = moving_shapes_clip(frames=6, height=32, width=32, seed=0).frames
    write_video(tmp_path / "clip.mp4", frames, 8.0)
    before = {name: (tmp_path / name).read_bytes() for name in listing(tmp_path)}
    real_save = lora_files.save_file

    def cancelled_mid_write(tensors, filename, metadata=None):
        real_save(tensors, filename, metadata=metadata)
        Path(filename).write_bytes(Path(filename).read_bytes()[:1000])  # half written...
        raise interrupt()  # ...when the cancel arrives

    monkeypatch.setattr(lora_files, "save_file", cancelled_mid_write)
    with pytest.raises(interrupt):
        save_motion_lora(lora, tiny_lora(2), {"steps": 2})

    def frames_then_cancel():
        for index, frame in enumerate(frames):
            if index == 3:
                raise interrupt()
            yield frame

    class Frames:
        """Frames ``[F, H, W, 3]`` whose iteration is cancelled at the 4th frame (what the encoder loop reads)."""
        ndim, shape = 4, frames.shape

        def __iter__(self):
            return frames_then_cancel()

    with pytest.raises(interrupt):
        write_video(tmp_path / "clip.mp4", Frames(), 8.0)
    assert listing(tmp_path) == sorted(before)
    assert all((tmp_path / name).read_bytes() == data for name, data in before.items())


def test_cancel_during_video_decode_leaves_no_open_file(tmp_path, monkeypatch):
    import sma.video as video

    write_video(tmp_path / "clip.mp4", moving_shapes_clip(frames=8, height=32, width=32, seed=0).frames, 8.0)
    fds = len(os.listdir("/proc/self/fd"))
    real_rgb, seen = video._rgb, []

    def rgb_then_cancel(frame):
        seen.append(frame)
        if len(seen) == 3:
            raise KeyboardInterrupt
        return real_rgb(frame)

    monkeypatch.setattr(video, "_rgb", rgb_then_cancel)
    with pytest.raises(KeyboardInterrupt):
        read_video(tmp_path / "clip.mp4")
    assert len(seen) == 3 and len(os.listdir("/proc/self/fd")) == fds
    assert listing(tmp_path) == ["clip.mp4"]


def test_ctrl_c_during_vae_encode_writes_nothing(inputs, tmp_path):
    need_tokenizer()

    class CancelledSource(TinySource):
        def vae(self):
            model = super().vae()
            real, calls = model.encode, []

            def encode(pixels):
                calls.append(pixels.shape[0])
                if len(calls) == 2:
                    raise KeyboardInterrupt  # Ctrl-C while the second chunk of frames is encoded
                return real(pixels)

            model.encode = encode
            return model

    out = tmp_path / "out"
    argv = ["train", "--checkpoint", inputs["unet"], "--motion-module", inputs["motion"], "--video", inputs["video"],
            "--out", out / "x.safetensors", "--width", "64", "--frames", "8", "--rank", "4", "--device", "cpu",
            "--precision", "fp32", "--no-gradient-checkpointing", "--steps", "2"]
    with pytest.raises(KeyboardInterrupt):
        train_cmd.run(build_parser().parse_args([str(a) for a in argv]), source_factory=CancelledSource)
    assert listing(out) == []  # no LoRA, no partial LoRA, no checkpoint, no temp file
