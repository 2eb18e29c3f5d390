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


def info(message: str) -> None:
    console.print(message)


def warn(message: str) -> None:
    console.print(f"[yellow]warning:[/yellow] {message}")


@contextmanager
def step(name: str):
    """Announce a step and how long it took."""
    started = time.monotonic()
    console.print(f"[bold]==>[/bold] {name}")
    yield
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
