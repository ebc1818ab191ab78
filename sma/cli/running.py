"""Training from the command line: device choice, a tqdm progress bar, Ctrl-C handling, the loss curve and the
message of an interrupted run.

Ctrl-C once: training stops after the current step (a resumable checkpoint is written when the run has
a checkpoint folder). Ctrl-C twice: it stops at once, keeping the LoRA as of the last finished step.
Either way the partial LoRA is saved (:func:`sma.training.train_motion_lora`) and the command exits with 130.
Ctrl-C before the first step has finished stops at once: there is nothing to save.
"""

from __future__ import annotations

import contextlib
import signal
import statistics
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tqdm import tqdm

from ..errors import SMAInputError
from ..training import StepReport, TrainCallbacks, TrainOutcome, TrainResult
from ..viz import loss_curve_image, save_png

if TYPE_CHECKING:
    from typing import Self

from .exit_codes import EXIT_INTERRUPTED


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cpu``, ``cuda``, ``cuda:N`` as given (checked)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise SMAInputError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N.") from error
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SMAInputError(f"device {name!r} asked for, but this PyTorch has no CUDA device; use --device cpu.")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise SMAInputError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s).")
    elif device.type != "cpu":
        raise SMAInputError(f"device {name!r} is not supported; use auto, cpu, cuda or cuda:N.")
    return device


class StopRequest:
    """Context that turns the first Ctrl-C into a stop request and lets the second one interrupt; before
    :meth:`started` (no step finished yet) the first one interrupts.

    Outside the main thread (where signal handlers cannot be set) it does nothing.
    """

    def __init__(self) -> None:
        self.requested = False
        self.running = False
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> Self:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)

    def started(self) -> None:
        """A training step has finished: from now on the first Ctrl-C asks to stop after the current step."""
        self.running = True

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested or not self.running:
            raise KeyboardInterrupt
        self.requested = True
        tqdm.write("\nstopping after this step and saving the LoRA (press Ctrl-C again to stop at once)",
                   file=sys.stderr)

    def __call__(self) -> bool:
        return self.requested


def _postfix(report: StepReport, share: list[float]) -> dict[str, str]:
    """The progress bar's figures: the main losses, and the median of the SMA gradient shares measured so far
    (``share``, appended to here; one measurement swings with its timestep)."""
    if report.sma_gradient_share is not None:
        share.append(report.sma_gradient_share)
    shown = {name: f"{report.losses[name]:.4f}" for name in ("loss", "mse", "vmc", "sma") if name in report.losses}
    return shown | ({"sma_share": f"{statistics.median(share):.0%}"} if share else {})


@contextlib.contextmanager
def terminal_progress(steps: int, on_preview: Callable[[int, torch.Tensor], None] | None = None
                      ) -> Iterator[TrainCallbacks]:
    """The callbacks of a run on the terminal: a progress bar on stderr once training starts, and Ctrl-C handling
    (see the module docstring), for :func:`sma.training.train_motion_lora` with ``stop_is_interruption=True``."""
    bars: list[tqdm] = []  # made when training starts (the first stop check), not while the clips are encoded
    share: list[float] = []  # the SMA gradient shares measured so far

    def should_stop() -> bool:
        if not bars:
            bars.append(tqdm(total=steps, desc="training", unit="step", file=sys.stderr, dynamic_ncols=True))
        return stop()

    def on_step(report: StepReport) -> None:
        stop.started()
        bars[0].n = report.step
        bars[0].set_postfix(_postfix(report, share), refresh=False)
        bars[0].refresh()

    with StopRequest() as stop:
        try:
            yield TrainCallbacks(on_step=on_step, on_preview=on_preview, should_stop=should_stop)
        finally:
            for bar in bars:
                bar.close()


def loss_curve_path(lora_path: Path) -> Path:
    """``<stem>_loss.png`` beside a LoRA file."""
    return lora_path.with_name(f"{lora_path.stem}_loss.png")


def save_loss_curve(result: TrainResult, lora_path: Path, interrupted: bool, png: Path | None = None) -> Path:
    """Write the run's loss-curve PNG (default: ``<stem>_loss.png`` beside the LoRA); returns its path."""
    png = png or loss_curve_path(lora_path)
    title = f"training loss ({result.step} steps{', interrupted' if interrupted else ''})"
    save_png(loss_curve_image(result.losses, title=title), png)
    return png


def report_interrupted(outcome: TrainOutcome, lora_path: Path, resume_hint: str = "") -> int:
    """Say where the partial LoRA is (and how to resume); returns the exit code 130."""
    result = outcome.result
    print(f"interrupted after step {result.step} of {result.metadata.get('steps', '?')}: "
          f"partial motion LoRA saved to {lora_path}", file=sys.stderr)
    if result.checkpoint is not None and resume_hint:
        print(f"resumable checkpoint: {result.checkpoint}; continue with {resume_hint}", file=sys.stderr)
    return EXIT_INTERRUPTED
