"""The pack's exception types: what the CLI and the ComfyUI nodes show as a message, without a traceback."""


def key_examples(keys: list[str], limit: int = 4) -> str:
    """The first ``limit`` of ``keys`` quoted, for error messages (``'a', 'b' and 3 more``)."""
    shown = ", ".join(repr(k) for k in keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


class SMAError(Exception):
    """Base of the pack's errors; the message says what happened and what to do."""


class SMAInputError(SMAError, ValueError):
    """Bad input from the user (file, clip, setting).

    The message says what was wrong and what is allowed.
    """


class TrainingDiverged(SMAError, RuntimeError):
    """A loss or gradient became NaN/inf; training stopped before that update was applied.

    Not bad input: the same settings may train on other data or seeds. Attributes: ``step`` (1-based
    step that failed), ``component`` (which loss), ``checkpoint`` (path of the last good checkpoint, or
    None).
    """

    def __init__(self, step: int, component: str, checkpoint: object | None) -> None:
        self.step, self.component, self.checkpoint = step, component, checkpoint
        where = (f"the last good checkpoint is {checkpoint} (resume from it with a lower learning rate)"
                 if checkpoint else "no checkpoint was written yet")
        super().__init__(f"training diverged at step {step}: {component} is NaN or inf. Lower learning_rate / "
                         f"spatial_learning_rate, keep max_grad_norm on, or use precision 'fp32' or 'bf16'; {where}.")
