"""Crashes lose nothing: real training processes (tiny model, CPU; two chains side by side, one per core) are
SIGKILLed at seeded moments, a third of them inside a checkpoint write and a third inside the LoRA write;
each kill is followed by a run that resumes from what is on disk.

A test-only slow disk makes the kills land inside writes: the child writes each file in two halves with a
pause between them (``WRITE_PAUSE``), so a temp file is half-written when the kill comes. After every kill:
the previous LoRA still loads and validates, every checkpoint left loads and validates, and the next run
resumes from the newest complete checkpoint. At the end the chain's LoRA equals an uninterrupted run's
bit for bit and no temp file is left (stale ones are removed by the next write into their folder).
"""
from __future__ import annotations

import os
import random
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import safetensors.torch
import torch

from sma.lora import load_motion_lora
from sma.models.build import make_noise_scheduler, tiny_motion_unet
from sma.training import TrainCallbacks, TrainConfig, Trainer, TrainingClip, latest_checkpoint, list_checkpoints
from sma.training import load_checkpoint

KILLS = 24
CHAINS = 2
MODES = ("random", "checkpoint", "lora")
STEPS_PER_RUN = 1
WRITE_PAUSE = 0.15
TRIAL_TIMEOUT = 60.0
LORA = "motion.safetensors"


def clip() -> TrainingClip:
    return TrainingClip(torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(0)), torch.zeros(1, 77, 32))


def config(folder: Path, steps: int) -> TrainConfig:
    return TrainConfig.from_flat(steps=steps, rank=2, window=4, spatial_path=False, gradient_checkpointing=False,
                       checkpoint_every=1, checkpoint_dir=str(folder / "checkpoints"), keep_checkpoints=2)


def temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*") if p.is_file())


class Events:
    """Lines a child appends to a file (one ``os.write`` each, so a kill never splits a line)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def emit(self, fd: int, text: str) -> None:
        os.write(fd, (text + "\n").encode())

    def read(self) -> list[str]:
        return self.path.read_text().splitlines() if self.path.exists() else []


def slow_writer(events: Events, fd: int, what: str):
    """A ``save_file`` that writes the file in two halves with ``WRITE_PAUSE`` between them."""
    def save_file(tensors, filename, metadata=None):
        data = safetensors.torch.save(tensors, metadata=metadata)
        events.emit(fd, f"begin {what}")
        with open(filename, "wb") as handle:
            handle.write(data[: len(data) // 2])
            handle.flush()
            time.sleep(WRITE_PAUSE)
            handle.write(data[len(data) // 2:])
        events.emit(fd, f"end {what}")
    return save_file


def child(unet, folder: Path, steps: int, events: Events, slow: bool) -> None:
    """The training process: resume from the folder if it has a checkpoint, train, write the LoRA; never returns."""
    code = 1
    try:
        torch.set_num_threads(1)
        fd = os.open(events.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        from sma.lora import files as lora_files
        from sma.training import checkpoint as ckpt

        if slow:
            ckpt.save_file = slow_writer(events, fd, "checkpoint")
            lora_files.save_file = slow_writer(events, fd, "lora")
        resume = latest_checkpoint(folder / "checkpoints")
        trainer = Trainer(unet, [clip()], make_noise_scheduler(), config(folder, steps))
        on_step = TrainCallbacks(on_step=lambda report: events.emit(fd, f"step {report.step}"))
        events.emit(fd, f"start {load_checkpoint(resume)[1]['step'] if resume else 0}")
        result = trainer.run(on_step, resume_from=resume)
        from sma.lora import save_motion_lora

        save_motion_lora(folder / LORA, result.lora_state, result.metadata)
        events.emit(fd, "done")
        code = 0
    finally:
        os._exit(code)


def spawn(unet, folder: Path, steps: int, events: Events, slow: bool = True) -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        child(unet, folder, steps, events, slow)
    return pid


def wait_for(events: Events, pid: int, predicate, deadline: float) -> bool:
    while time.monotonic() < deadline:
        if predicate(events.read()):
            return True
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return False
        time.sleep(0.005)
    raise AssertionError("a training child hung")


def complete_checkpoint_step(folder: Path) -> int:
    """Newest step among the checkpoints that load and validate (0 when none)."""
    steps = [load_checkpoint(p)[1]["step"] for p in list_checkpoints(folder / "checkpoints")]
    return max(steps, default=0)


@pytest.fixture(scope="module")
def pristine_unet():
    return tiny_motion_unet("v3", seed=0)


def kill_when(mode: str, events: Events, pid: int, delay: float, errors: list) -> None:
    """Wait for the moment ``mode`` names, then ``delay`` seconds, then SIGKILL ``pid`` and reap it."""
    try:
        deadline = time.monotonic() + TRIAL_TIMEOUT
        marker = "start" if mode == "random" else f"begin {mode}"
        wait_for(events, pid, lambda lines: any(line.startswith(marker) for line in lines), deadline)
        time.sleep(delay)
    except AssertionError as error:
        errors.append(error)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def finish(pid: int, events: Events, timeout: float) -> list[str]:
    wait_for(events, pid, lambda lines: "done" in lines, time.monotonic() + timeout)
    assert os.waitpid(pid, 0)[1] == 0
    return events.read()


def test_sigkill_at_random_moments_loses_nothing_and_resume_continues(pristine_unet, tmp_path, capsys):
    """Two chains run side by side (one per core); each round kills one training process of each."""
    rng = random.Random(2024)
    chains = [tmp_path / f"chain{c}" for c in range(CHAINS)]
    for folder in chains:
        folder.mkdir()
    landed: Counter = Counter()
    stale_seen = 0
    lora_steps: dict[Path, set[int]] = {folder: set() for folder in chains}
    for round_ in range(KILLS // CHAINS):
        trials = []
        for c, folder in enumerate(chains):  # forks happen here, in the main thread, with no other thread alive
            trial = round_ * CHAINS + c
            mode = MODES[trial % len(MODES)]
            delay = rng.uniform(0.0, 0.8) if mode == "random" else rng.uniform(0.0, WRITE_PAUSE * 0.8)
            start, events = complete_checkpoint_step(folder), Events(tmp_path / f"events-{trial}.txt")
            trials.append((folder, start, mode, delay, events, spawn(pristine_unet, folder, start + STEPS_PER_RUN, events)))
        errors: list = []
        killers = [threading.Thread(target=kill_when, args=(mode, events, pid, delay, errors))
                   for _, _, mode, delay, events, pid in trials]
        for killer in killers:
            killer.start()
        for killer in killers:
            killer.join()
        assert not errors, errors
        for folder, start, _, _, events, _ in trials:
            lines = events.read()
            assert lines[0] == f"start {start}", lines  # resumed from the last complete checkpoint
            last = lines[-1].split()
            landed[f"inside a {last[1]} write" if last[0] == "begin" else "after the run finished"
                   if last[0] == "done" else "between writes"] += 1
            if "done" in lines:
                lora_steps[folder].add(start + STEPS_PER_RUN)
            stale_seen += len(temp_files(folder))
            # after the kill: everything on disk loads and validates
            for path in list_checkpoints(folder / "checkpoints"):
                tensors, state = load_checkpoint(path)
                assert state["step"] == int(path.stem.split("-")[1]) and tensors
            if (folder / LORA).exists():
                state, metadata = load_motion_lora(folder / LORA)
                assert len(state) == 2 * 160 and metadata["steps_done"] in lora_steps[folder] | {start + STEPS_PER_RUN}
                lora_steps[folder].add(metadata["steps_done"])
    # one last run per chain without a kill, and an uninterrupted reference run of the same length
    finals = []
    for c, folder in enumerate(chains):
        start = complete_checkpoint_step(folder)
        events = Events(tmp_path / f"events-final-{c}.txt")
        finals.append((folder, start, events, spawn(pristine_unet, folder, start + STEPS_PER_RUN, events)))
    totals = []
    for folder, start, events, pid in finals:
        assert finish(pid, events, TRIAL_TIMEOUT)[0] == f"start {start}"
        assert temp_files(folder) == [], "temp files of killed writers were left behind"
        totals.append(start + STEPS_PER_RUN)
    references = []
    for c, total in enumerate(totals):
        reference = tmp_path / f"reference{c}"
        reference.mkdir()
        events = Events(tmp_path / f"events-reference-{c}.txt")
        references.append((reference, events, spawn(pristine_unet, reference, total, events, slow=False)))
    for folder, total, (reference, events, pid) in zip(chains, totals, references):
        finish(pid, events, 4 * TRIAL_TIMEOUT)
        chained, metadata = load_motion_lora(folder / LORA)
        uninterrupted, _ = load_motion_lora(reference / LORA)
        assert metadata["steps_done"] == total and chained.keys() == uninterrupted.keys()
        assert all(torch.equal(chained[k], uninterrupted[k]) for k in chained), "resume did not continue exactly"
    with capsys.disabled():
        print(f"\n[crash] {KILLS} SIGKILLs: " + ", ".join(f"{k} {v}" for k, v in sorted(landed.items()))
              + f"; temp files left by kills {stale_seen} (all removed by later writes); files lost 0; "
              f"chains of {totals} steps", file=sys.stderr)
    assert landed["inside a checkpoint write"] >= KILLS // 4 and landed["inside a lora write"] >= KILLS // 4
