"""The one way relocpy runs a subprocess.

The command is logged, its output streamed into a per-step log file, and a
failure raises StepFailed carrying the step's name and the log's tail.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import threading
from collections import deque
from pathlib import Path

from relocpy.errors import StepFailed
from relocpy.progress import detail

TAIL_LINES = 25
# The steps' processes now running: stop_all() ends them when a build that
# runs steps side by side is interrupted (only the main thread sees Ctrl-C).
_running: set[subprocess.Popen] = set()
_running_lock = threading.Lock()


def run(
    step: str,
    argv: list[str],
    log: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    inherit_env: bool = True,
) -> None:
    """Run argv with env added to ours, or with env alone (inherit_env=False)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    detail(f"    {step}: {shlex.join(argv)}  (log: {log})")
    with log.open("ab") as out:
        out.write(f"$ {shlex.join(argv)}\n".encode())
        out.flush()
        try:
            process = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**(os.environ if inherit_env else {}), **(env or {})}, cwd=cwd, start_new_session=True,
            )
        except FileNotFoundError:
            raise StepFailed(f"{step}: command not found: {argv[0]}") from None
        with _running_lock:
            _running.add(process)
        try:
            code = process.wait()
        except BaseException:
            _terminate(process)
            raise
        finally:
            with _running_lock:
                _running.discard(process)
    if code != 0:
        raise StepFailed(f"{step} failed (exit {code}); log: {log}\n{tail(log)}")


def stop_all() -> None:
    """End every step's process now running (each run() then raises StepFailed)."""
    with _running_lock:
        processes = list(_running)
    for process in processes:
        _terminate(process)


def capture(argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    """Run a short command and return its stdout (stderr kept for the error)."""
    result = subprocess.run(
        argv, capture_output=True, text=True, env={**os.environ, **(env or {})}, cwd=cwd
    )
    if result.returncode != 0:
        raise StepFailed(f"{shlex.join(argv)} failed (exit {result.returncode}): {result.stderr.strip()[-2000:]}")
    return result.stdout


def tail(log: Path, lines: int = TAIL_LINES) -> str:
    with log.open("rb") as handle:
        last = deque(handle, maxlen=lines)
    return "".join(line.decode(errors="replace") for line in last).rstrip()


def _terminate(process: subprocess.Popen) -> None:
    """Stop the whole process group a step started (make spawns many)."""
    import signal

    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
