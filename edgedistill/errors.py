"""Errors that speak to the user, each with its own process exit code.

The CLI turns an :class:`EdgeDistillError` into one line on stderr and ``exit_code``;
anything else is a bug and exits with :data:`EXIT_INTERNAL`. The codes are a public
contract (CI pipelines gate on them) and are documented in the README.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_INPUT = 2
EXIT_VERIFY = 3
EXIT_GATE = 4
EXIT_BUDGET = 5
EXIT_DEVICE = 6
EXIT_RANK_LOST = 7
EXIT_INTERRUPTED = 130


class EdgeDistillError(Exception):
    """A failure the user can act on: ``str(err)`` says what was wrong and what to do."""

    exit_code = EXIT_INPUT

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message} ({hint})")


class InputError(EdgeDistillError):
    """Bad user input: a missing or malformed file, an unknown name, an unwritable path."""

    exit_code = EXIT_INPUT


class VerificationError(EdgeDistillError):
    """An exported artifact disagrees with the model it came from."""

    exit_code = EXIT_VERIFY


class GateError(EdgeDistillError):
    """A quality gate (accuracy, latency, size) failed on the measured result."""

    exit_code = EXIT_GATE


class BudgetError(EdgeDistillError):
    """No candidate student can meet the target's budgets."""

    exit_code = EXIT_BUDGET


class DeviceError(EdgeDistillError):
    """A device could not be reached or failed while benchmarking."""

    exit_code = EXIT_DEVICE


class ExportError(EdgeDistillError):
    """A converter (litert-torch, onnx) failed on a model edgedistill built: a bug, ours or upstream's;
    the message names the artifact and where the traceback was kept."""

    exit_code = EXIT_INTERNAL


class RankMismatchError(InputError):
    """A rank of a multi-process build loaded other inputs than rank 0."""


class RankLostError(EdgeDistillError):
    """A process of a multi-process build died or lost contact; the job stopped (rerun to resume)."""

    exit_code = EXIT_RANK_LOST
