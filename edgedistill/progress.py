"""Progress and log lines on stderr (stdout is kept for --json summaries)."""

from __future__ import annotations

import os
import sys
import time

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


def console(stderr: bool = False, quiet: bool = False) -> Console:
    """A console that, when piped (CI logs), keeps long lines and tables unwrapped."""
    stream = sys.stderr if stderr else sys.stdout
    piped = not stream.isatty()
    # soft_wrap: a piped line stays one line however long (a grep-able CI log), tables keep 160.
    return Console(stderr=stderr, quiet=quiet, width=160 if piped else None, soft_wrap=piped)


def _format_seconds(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class PlainProgress:
    """Epoch progress as plain lines, for a stderr that is not a terminal (CI logs, ``| tee``):
    rich's live bar draws nothing there until it finishes, so a first build would look hung.
    Prints the first and last epoch of a run and otherwise at most one line per ``interval_s``."""

    def __init__(self, write, interval_s: float | None = None, clock=time.monotonic) -> None:
        self._write = write
        self._clock = clock
        env = os.environ.get("EDGEDISTILL_PROGRESS_INTERVAL")
        self.interval_s = interval_s if interval_s is not None else float(env) if env else 10.0
        self._label: str | None = None
        self._start = 0.0
        self._last = 0.0

    def update(self, label: str, epoch: int, epochs: int, info: str) -> None:
        now = self._clock()
        if label != self._label:
            # The clock starts at the first report of a run: epoch 1 is then already done, so
            # the ETA counts its time once the second report arrives.
            self._label, self._start, self._last, self._first_epoch = label, now, None, epoch
        due = self._last is None or epoch >= epochs or now - self._last >= self.interval_s
        if not due:
            return
        elapsed = now - self._start
        done = epoch - self._first_epoch
        eta = elapsed / done * (epochs - epoch) if done > 0 else None
        stage = f"epoch {epoch}/{epochs}"
        times = f"elapsed {_format_seconds(elapsed)}" + (f", ETA {_format_seconds(eta)}" if eta is not None else "")
        self._write(f"{'':>9} {label} {stage}  {info}  ({times})")
        self._last = now


class Reporter:
    def __init__(self, quiet: bool = False) -> None:
        self.console = console(stderr=True, quiet=quiet)
        # Live bars on a terminal; plain lines at a steady rate anywhere else.
        self._plain = None if self.console.is_terminal else PlainProgress(
            lambda line: self.console.print(line, highlight=False, markup=False))
        self._progress: Progress | None = None
        self._task = None
        self._label = None
        self.stage_seconds: dict[str, float] = {}
        self._stage_start: tuple[str, float] | None = None

    def stage(self, name: str, message: str) -> None:
        self._close_stage()
        self._stage_start = (name, time.perf_counter())
        self.console.print(f"[bold cyan]{name:>9}[/] {escape(message)}")

    def note(self, message: str) -> None:
        self.console.print(f"{'':>9} {escape(message)}")

    def warn(self, message: str) -> None:
        self.console.print(f"[bold yellow]{'warning':>9}[/] {escape(message)}")

    def epoch(self, label: str, epoch: int, epochs: int, info: str) -> None:
        if self._plain is not None:
            self._plain.update(label, epoch, epochs, info)
            return
        if self._label != label or self._progress is None:
            self._end_bar()
            self._progress = Progress(
                TextColumn(f"{'':>9} {label}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                console=self.console, transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task(label, total=epochs, info="")
            self._label = label
        self._progress.update(self._task, completed=epoch, info=info)
        if epoch >= epochs:
            self._end_bar()

    def _end_bar(self) -> None:
        if self._progress is not None:
            self._progress.stop()
        self._progress, self._task, self._label = None, None, None

    def _close_stage(self) -> None:
        self._end_bar()
        if self._stage_start is not None:
            name, start = self._stage_start
            self.stage_seconds[name] = self.stage_seconds.get(name, 0.0) + time.perf_counter() - start
            self._stage_start = None

    def finish(self) -> None:
        self._close_stage()
