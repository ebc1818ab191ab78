"""Byte-flip and truncation fuzzing of real files through every reader of the pack.

Three kinds, 300 seeded mutants each (200 with 1-3 flipped bytes, half of them aimed at the safetensors
header, and 100 truncations): a motion LoRA written by ``save_motion_lora``, the tiny v3 motion module,
and a training checkpoint written by a real (tiny) training run. Each mutant must be refused with an
``SMAInputError`` or load and validate: a LoRA or checkpoint that loads must be bit-identical to what was
written (both carry checksums); a motion module that loads has every key, shape and dtype of its family
and only finite values (third-party files carry no checksum, so a flipped bit in a weight can only be
caught when it makes the value non-finite). Any other exception fails; a read that takes longer than
``PER_FILE_SECONDS`` fails, and one that hangs ends the run (faulthandler) instead of stalling CI.
"""
from __future__ import annotations

import faulthandler
import random
import struct
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from sma.cli.inspect_lora import describe
from sma.errors import SMAInputError
from sma.lora import ade_lora_key, load_motion_lora, save_motion_lora
from sma.lora.validate import motion_lora_layers
from sma.models.build import make_noise_scheduler, motion_module_state_dict, tiny_motion_unet
from sma.models.files import load_motion_module
from sma.training import TrainConfig, Trainer, TrainingClip, latest_checkpoint, load_checkpoint

FLIPS, TRUNCATIONS = 200, 100
PER_FILE_SECONDS = 10.0
HANG_SECONDS = 60
TINY_CHANNELS = (16, 32, 64, 64)


def mutants(data: bytes, seed: int) -> list[tuple[str, bytes]]:
    """``FLIPS`` byte-flip and ``TRUNCATIONS`` truncation mutants of ``data`` (seeded)."""
    rng = random.Random(seed)
    header_end = 8 + struct.unpack("<Q", data[:8])[0]
    out = []
    for i in range(FLIPS):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            position = rng.randrange(header_end if i % 2 else len(data))
            mutated[position] ^= rng.randrange(1, 256)
        out.append(("flip", bytes(mutated)))
    out += [("truncate", data[:rng.randrange(len(data))]) for _ in range(TRUNCATIONS)]
    return out


def fuzz(kind: str, original: Path, readers: list[Callable[[Path], object]], check_loaded: Callable[[object], str],
         seed: int, capsys) -> Counter:
    """Run every reader on every mutant; returns outcome counts (also printed)."""
    data = original.read_bytes()
    target = original.with_name("mutant" + original.suffix)
    counts: Counter = Counter()
    slowest = 0.0
    for index, (how, mutated) in enumerate(mutants(data, seed)):
        target.write_bytes(mutated)
        outcomes = []
        for reader in readers:
            faulthandler.dump_traceback_later(HANG_SECONDS, exit=True, file=sys.__stderr__)
            started = time.perf_counter()
            try:
                loaded = reader(target)
            except SMAInputError:
                outcomes.append("refused")
            except Exception as error:  # noqa: BLE001 - any other exception is the failure under test
                pytest.fail(f"{kind} mutant {index} ({how}): {reader.__name__} raised {type(error).__name__}: {error}")
            else:
                outcomes.append(check_loaded(loaded))
            finally:
                faulthandler.cancel_dump_traceback_later()
                elapsed = time.perf_counter() - started
                slowest = max(slowest, elapsed)
            assert elapsed < PER_FILE_SECONDS, f"{kind} mutant {index}: {reader.__name__} took {elapsed:.1f} s"
        assert len(set(outcomes)) == 1, f"{kind} mutant {index} ({how}): readers disagree: {outcomes}"
        counts[f"{how}: {outcomes[0]}"] += 1
    target.unlink()
    with capsys.disabled():
        listing = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        print(f"\n[fuzz] {kind}: {sum(counts.values())} mutants: {listing}; slowest read {slowest * 1000:.0f} ms",
              file=sys.stderr)
    return counts


def same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)


# --- the files ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lora_file(tmp_path_factory) -> Path:
    """A rank-4 motion LoRA of the tiny v3 layout (attention, ff, proj) written by the pack, with training metadata."""
    generator = torch.Generator().manual_seed(0)
    state = {}
    for module, (out_features, in_features) in motion_lora_layers(TINY_CHANNELS, 2, has_mid_block=False).items():
        state[ade_lora_key(module, "down")] = (torch.randn(4, in_features, generator=generator) * 0.1).half()
        state[ade_lora_key(module, "up")] = (torch.randn(out_features, 4, generator=generator) * 0.1).half()
    metadata = {"trainer": "sma", "family": "v3", "frames": 8, "steps": 40, "targets": ["attention", "ff", "proj"],
                "timesteps": [0, 999], "lambda_global": 0.4}
    return save_motion_lora(tmp_path_factory.mktemp("fuzz_lora") / "motion.safetensors", state, metadata)


@pytest.fixture(scope="module")
def motion_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fuzz_mm") / "tiny_v3.safetensors"
    save_file(motion_module_state_dict("v3", "tiny", torch.float16, seed=3), str(path))
    return path


@pytest.fixture(scope="module")
def checkpoint_file(tmp_path_factory) -> Path:
    """The checkpoint of a real 1-step training run of the tiny v3 model (motion + spatial LoRA, AdamW moments)."""
    folder = tmp_path_factory.mktemp("fuzz_ckpt")
    config = TrainConfig.from_flat(steps=1, rank=2, gradient_checkpointing=False, checkpoint_every=1,
                                   checkpoint_dir=str(folder), window=4)
    clip = TrainingClip(torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(0)), torch.zeros(1, 77, 32))
    Trainer(tiny_motion_unet("v3", seed=0), [clip], make_noise_scheduler(), config).run()
    return latest_checkpoint(folder)


# --- the runs -------------------------------------------------------------------------------------------------

def test_fuzz_motion_lora(lora_file, capsys):
    state, metadata = load_motion_lora(lora_file)
    original_lines = describe(lora_file)[1:]  # all but the size line

    def loaded_intact(result) -> str:
        if isinstance(result, tuple):
            assert same_tensors(result[0], state) and result[1] == metadata, "silent garbage: a changed LoRA loaded"
        else:
            assert result[1:] == original_lines, "silent garbage: inspect describes a changed LoRA"
        return "loaded intact"

    counts = fuzz("motion LoRA", lora_file, [load_motion_lora, describe], loaded_intact, seed=1, capsys=capsys)
    assert sum(counts.values()) == FLIPS + TRUNCATIONS
    assert counts["truncate: refused"] == TRUNCATIONS
    assert counts["flip: refused"] >= 0.95 * FLIPS  # checksums: only flips inside its own key name can pass


def test_fuzz_motion_module(motion_file, capsys):
    original, info = load_motion_module(motion_file)
    shapes = {k: (v.shape, v.dtype) for k, v in original.items()}

    def loaded_valid(result) -> str:
        state, found = result
        assert found == info and {k: (v.shape, v.dtype) for k, v in state.items()} == shapes
        assert all(bool(torch.isfinite(v).all()) for v in state.values())
        return "loaded intact" if same_tensors(state, original) else "loaded, weight values changed"

    counts = fuzz("motion module", motion_file, [load_motion_module], loaded_valid, seed=2, capsys=capsys)
    assert counts["truncate: refused"] == TRUNCATIONS
    assert counts["flip: refused"] >= FLIPS // 3  # every header flip that changes a name, shape or offset


def test_fuzz_training_checkpoint(checkpoint_file, capsys):
    tensors, state = load_checkpoint(checkpoint_file)
    assert state["step"] == 1 and any(k.startswith("optimizer.") for k in tensors)

    def loaded_intact(result) -> str:
        assert same_tensors(result[0], tensors) and result[1] == state, "silent garbage: a changed checkpoint loaded"
        return "loaded intact"

    counts = fuzz("training checkpoint", checkpoint_file, [load_checkpoint], loaded_intact, seed=3, capsys=capsys)
    assert counts["truncate: refused"] == TRUNCATIONS
    assert counts["flip: refused"] >= 0.95 * FLIPS
