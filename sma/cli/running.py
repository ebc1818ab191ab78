"""Running a :class:`~sma.training.Trainer` from the command line: device choice, a tqdm progress bar,
Ctrl-C handling and writing the LoRA + loss curve.

Ctrl-C once: training stops after the current step (a resumable checkpoint is written when the run has
a checkpoint folder). Ctrl-C twice: it stops at once, keeping the LoRA as of the last finished step.
Either way the partial LoRA is saved and the command exits with 130.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tqdm import tqdm

from ..errors import SMAInputError
from ..lora import export_motion_lora, save_motion_lora
from ..training import StepReport, TrainCallbacks, Trainer, TrainResult, partial_path
from ..training.model import MOTION_ADAPTER
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
    """Context that turns the first Ctrl-C into a stop request and lets the second one interrupt.

    Outside the main thread (where signal handlers cannot be set) it does nothing.
    """

    def __init__(self) -> None:
        self.requested = False
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

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        tqdm.write("\nstopping after this step and saving the LoRA (press Ctrl-C again to stop at once)",
                   file=sys.stderr)

    def __call__(self) -> bool:
        return self.requested


@dataclass
class Outcome:
    """A finished or interrupted run: the trainer's result and whether Ctrl-C ended it."""

    result: TrainResult
    interrupted: bool


def _postfix(losses: dict[str, float]) -> dict[str, str]:
    shown = {name: losses[name] for name in ("loss", "mse", "sma") if name in losses}
    return {name: f"{value:.4f}" for name, value in shown.items()}


def run_trainer(trainer: Trainer, *, resume_from: str | Path | None = None,
                on_preview: Callable[[int, torch.Tensor], None] | None = None) -> Outcome:
    """Run ``trainer`` with a progress bar on stderr and Ctrl-C handling (see the module docstring).

    Raises:
        KeyboardInterrupt: interrupted before the first step finished (nothing to save).
    """
    done: list[StepReport] = []
    with tqdm(total=trainer.config.steps, desc="training", unit="step", file=sys.stderr,
              dynamic_ncols=True) as bar, StopRequest() as stop:

        def on_step(report: StepReport) -> None:
            done.append(report)
            bar.n = report.step
            bar.set_postfix(_postfix(report.losses), refresh=False)
            bar.refresh()

        callbacks = TrainCallbacks(on_step=on_step, on_preview=on_preview, should_stop=stop)
        try:
            result = trainer.run(callbacks, resume_from=resume_from)
        except KeyboardInterrupt:
            if not done:
                raise
            return Outcome(_result_so_far(trainer, done), True)
    return Outcome(result, stop.requested and result.stopped_early)


def _result_so_far(trainer: Trainer, done: list[StepReport]) -> TrainResult:
    """The LoRA in the model after a hard interrupt, as of the last finished step of this run."""
    step = done[-1].step
    return TrainResult(lora_state=export_motion_lora(trainer.unet, MOTION_ADAPTER, torch.float16),
                       metadata=trainer.metadata(step, stopped_early=True), losses=[r.losses for r in done],
                       last_preview=None, stopped_early=True, step=step, checkpoint=trainer.last_checkpoint)


def loss_curve_path(lora_path: Path) -> Path:
    """``<stem>_loss.png`` beside a LoRA file."""
    return lora_path.with_name(f"{lora_path.stem}_loss.png")


def save_outcome(outcome: Outcome, lora_path: Path, extra_metadata: dict[str, Any],
                 loss_png: Path | None = None) -> tuple[Path, Path]:
    """Write the LoRA (``partial_path`` when interrupted) and its loss-curve PNG; returns both paths."""
    result = outcome.result
    path = partial_path(lora_path) if outcome.interrupted else lora_path
    save_motion_lora(path, result.lora_state, {**result.metadata, **extra_metadata})
    return path, save_loss_curve(result, path, outcome.interrupted, loss_png)


def save_loss_curve(result: TrainResult, lora_path: Path, interrupted: bool, png: Path | None = None) -> Path:
    """Write the run's loss-curve PNG (default: ``<stem>_loss.png`` beside the LoRA); returns its path."""
    png = png or loss_curve_path(lora_path)
    title = f"training loss ({result.step} steps{', interrupted' if interrupted else ''})"
    save_png(loss_curve_image(result.losses, title=title), png)
    return png


def report_interrupted(outcome: Outcome, lora_path: Path, resume_hint: str = "") -> int:
    """Say where the partial LoRA is (and how to resume); returns the exit code 130."""
    result = outcome.result
    print(f"interrupted after step {result.step} of {result.metadata.get('steps_planned', '?')}: "
          f"partial motion LoRA saved to {lora_path}", file=sys.stderr)
    if result.checkpoint is not None and resume_hint:
        print(f"resumable checkpoint: {result.checkpoint}; continue with {resume_hint}", file=sys.stderr)
    return EXIT_INTERRUPTED
