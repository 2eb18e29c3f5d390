"""Run build scripts on the host (development, and macOS/Windows CI VMs).

A script gets the environment its step declares and a fixed PATH, nothing of
the calling shell: a CFLAGS, MAKEFLAGS, PKG_CONFIG_PATH or PYTHONPATH the
developer exported would otherwise change the build without changing its key.
"""

from __future__ import annotations

import platform
from pathlib import Path

from relocpy import shell
from relocpy.runners import Mounts

# Where a build's tools are on a host prepared by tools/install-host-deps (or,
# on macOS, by Homebrew); nothing from a user's ~/.local/bin, pyenv shims or
# virtual environment.
DEFAULT_PATHS = {
    "Darwin": "/opt/homebrew/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
    "Linux": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
}


class NativeRunner:
    name = "native"

    def __init__(self, path: str | None = None):
        self.path = path or DEFAULT_PATHS.get(platform.system(), DEFAULT_PATHS["Linux"])

    def identity(self) -> str:
        """The host as keys see it: system, distribution release, machine, libc.
        (The host's tools come with its release; a point update of one is not seen.)"""
        libc, libc_version = platform.libc_ver()
        parts = [platform.system().lower(), _release(), platform.machine(), f"{libc}-{libc_version}".strip("-")]
        return "native:" + ":".join(part for part in parts if part)

    def environment(self) -> dict[str, str]:
        return {"PATH": self.path}

    def run_script(self, step: str, script: Path, env: dict[str, str], mounts: Mounts, log: Path) -> None:
        argv = ["bash", "-euo", "pipefail", str(script)]
        shell.run(step, argv, log=log, env={**self.environment(), **env}, inherit_env=False)

    def close(self) -> None:
        pass


def _release() -> str:
    """The distribution and its version (debian-12), or the OS version."""
    if platform.system() == "Linux":
        try:
            release = platform.freedesktop_os_release()
        except OSError:
            return platform.release()
        return f"{release.get('ID', 'linux')}-{release.get('VERSION_ID', '')}".strip("-")
    if platform.system() == "Darwin":
        return "macos-" + platform.mac_ver()[0]
    return platform.version()
