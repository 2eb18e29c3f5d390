"""Run build scripts on the host (development, and macOS/Windows CI VMs)."""

from __future__ import annotations

from pathlib import Path

from relocpy import shell
from relocpy.runners import Mounts


class NativeRunner:
    name = "native"

    def run_script(self, step: str, script: Path, env: dict[str, str], mounts: Mounts, log: Path) -> None:
        shell.run(step, ["bash", "-euo", "pipefail", str(script)], log=log, env=env)

    def close(self) -> None:
        pass
