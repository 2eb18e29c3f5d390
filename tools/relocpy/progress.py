"""How steps, transfers and failures look on the console: one place decides.

Progress goes to stderr so that --json output on stdout stays clean.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

console = Console(stderr=True, highlight=False, soft_wrap=True)
# -1: quiet (warnings and errors only), 0: normal, 1: verbose (-v: also each
# command a step runs and where its log goes).
_verbosity = 0


def set_verbosity(level: int) -> None:
    global _verbosity
    _verbosity = level


def info(message: str) -> None:
    if _verbosity >= 0:
        console.print(message)


def detail(message: str) -> None:
    """Shown with -v only."""
    if _verbosity > 0:
        console.print(message, style="dim")


def warn(message: str) -> None:
    console.print(f"[yellow]warning:[/yellow] {message}")


@contextmanager
def step(name: str):
    """Announce a step and how long it took."""
    started = time.monotonic()
    if _verbosity >= 0:
        console.print(f"[bold]==>[/bold] {name}")
    yield
    if _verbosity >= 0:
        console.print(f"    {name}: done in {time.monotonic() - started:.1f}s", style="dim")


class TransferProgress:
    """A progress bar per download; silent when disabled or not on a terminal."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled and sys.stderr.isatty()
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=not self.enabled,
        )

    def __enter__(self) -> TransferProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.__exit__(*exc)

    def add(self, label: str, total: int | None = None):
        return self._progress.add_task(label, total=total)

    def update(self, task, **fields) -> None:
        self._progress.update(task, **fields)

    def done(self, task) -> None:
        self._progress.remove_task(task)
