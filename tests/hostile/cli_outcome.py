"""What the hostile cases of the cache, the recipes and the CLI share: run the
real command, check its one error line, and prove that nothing was written."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import relocpy

TOOLS = Path(relocpy.__file__).resolve().parents[1]  # this checkout's code, whatever is installed
REPO = TOOLS.parent


def client_env(home: Path, **extra: str) -> dict[str, str]:
    """The caller's environment less relocpy's and XDG's variables, with data,
    config and cache dirs under home, and this checkout's code first."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith(("RELOCPY_", "XDG_"))}
    return {**kept, "PYTHONPATH": str(TOOLS), "XDG_DATA_HOME": str(home / "data"),
            "XDG_CONFIG_HOME": str(home / "config"), "XDG_CACHE_HOME": str(home / "cache"), **extra}


def run(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "relocpy", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def start(*args: str, env: dict[str, str]) -> subprocess.Popen:
    """The command in the background, Ctrl-C working as at a terminal (a
    shell starting the tests in the background would have it ignored)."""
    return subprocess.Popen([sys.executable, "-m", "relocpy", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def refused(result: subprocess.CompletedProcess, code: int) -> str:
    """The one `relocpy: error:` line of a failure with this exit code: no
    traceback, no second error line."""
    assert result.returncode == code, f"exit {result.returncode}, not {code}:\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("relocpy: error:")]
    assert len(errors) == 1 and result.stderr.strip().splitlines()[-1] == errors[0], result.stderr
    return errors[0]


def snapshot(*roots: Path) -> dict[str, tuple[str, str]]:
    """Every path under roots, with its kind and content (a file's sha256, a
    link's target): equal snapshots, nothing written, removed or changed."""
    found: dict[str, tuple[str, str]] = {}
    for root in roots:
        if not os.path.lexists(root):
            found[str(root)] = ("absent", "")
            continue
        paths = [root, *root.rglob("*")] if root.is_dir() and not root.is_symlink() else [root]
        for path in paths:
            if path.is_symlink():
                found[str(path)] = ("link", os.readlink(path))
            elif path.is_file():
                found[str(path)] = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
            elif path.is_dir():
                found[str(path)] = ("dir", "")
            else:
                found[str(path)] = ("other", "")
    return found
