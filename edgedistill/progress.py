"""Progress and log lines on stderr (stdout is kept for --json summaries)."""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


def console(stderr: bool = False, quiet: bool = False) -> Console:
    """A console that, when piped (CI logs), keeps long lines and tables unwrapped."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else 160
    return Console(stderr=stderr, quiet=quiet, width=width)


class Reporter:
    def __init__(self, quiet: bool = False) -> None:
        self.console = console(stderr=True, quiet=quiet)
        self._progress: Progress | None = None
        self._task = None
        self._label = None
        self.stage_seconds: dict[str, float] = {}
        self._stage_start: tuple[str, float] | None = None

    def stage(self, name: str, message: str) -> None:
        self._close_stage()
        self._stage_start = (name, time.perf_counter())
        self.console.print(f"[bold cyan]{name:>9}[/] {message}")

    def note(self, message: str) -> None:
        self.console.print(f"{'':>9} {message}")

    def warn(self, message: str) -> None:
        self.console.print(f"[yellow]{'warning':>9}[/] {message}")

    def epoch(self, label: str, epoch: int, epochs: int, info: str) -> None:
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
