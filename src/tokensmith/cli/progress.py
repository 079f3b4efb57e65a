"""What a long administration command (a backup, a restore) shows while it runs: on a terminal, a
bar per step with the bytes gone through (rich, on stderr); anywhere else (cron, a script), nothing
until its result, in one line."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

from tokensmith.backups.snapshot import Progress as Watcher


class TerminalProgress:
    """A step at a time, each on its own line once done."""

    def __init__(self, console: Console) -> None:
        self._bars = Progress(
            SpinnerColumn(finished_text="✓"),
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeElapsedColumn(),
            console=console,
        )
        self._task: TaskID | None = None

    def start(self, label: str, total: int | None = None) -> None:
        self._finish_step()
        self._task = self._bars.add_task(label, total=total)

    def advance(self, amount: int) -> None:
        if self._task is not None:
            self._bars.advance(self._task, amount)

    def _finish_step(self) -> None:
        if self._task is not None:
            done = self._bars.tasks[self._task].completed
            self._bars.update(self._task, total=done, completed=done)

    def __enter__(self) -> TerminalProgress:
        self._bars.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._finish_step()
        self._bars.stop()


@contextlib.contextmanager
def shown() -> Iterator[Watcher | None]:
    """A progress display when stderr is a terminal that can draw one, else None."""
    console = Console(stderr=True)
    if not sys.stderr.isatty() or console.is_dumb_terminal:
        yield None
        return
    with TerminalProgress(console) as progress:
        yield progress
