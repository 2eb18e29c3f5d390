"""The Docker engine, reached through the `docker` client: one small class.

Everything relocpy asks of the engine goes through here, so the runner, the
image commands and the tests share one notion of "is it up" and one error.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from relocpy import shell
from relocpy.errors import EngineError

START_HINT = (
    "no Docker engine reachable: start one with `dockerd --iptables=false --bridge=none &` "
    "(or `.ci/start-docker`), or point DOCKER_HOST at a running engine"
)


class DockerEngine:
    def __init__(self, client: str = "docker"):
        self.client = client

    def ensure_engine(self) -> None:
        """Raise EngineError with one line when no engine answers."""
        if shutil.which(self.client) is None:
            raise EngineError(f"no Docker client '{self.client}' on PATH: install docker.io (or run `.ci/start-docker`)")
        if self._quiet(["info", "--format", "{{.ServerVersion}}"]) is None:
            raise EngineError(START_HINT)

    def image_id(self, tag: str) -> str | None:
        """The image's id, or None when the engine has no image by that tag."""
        return self._quiet(["image", "inspect", "--format", "{{.Id}}", tag])

    def image_label(self, tag: str, label: str) -> str | None:
        value = self._quiet(["image", "inspect", "--format", f'{{{{index .Config.Labels "{label}"}}}}', tag])
        return value or None

    def build(self, tag: str, context: Path, labels: dict[str, str], log: Path) -> None:
        # Host network: the engine may run without a bridge (--bridge=none),
        # and the build needs the package mirror; the builds it serves do not.
        # --force-rm: the classic builder keeps a failed step's container.
        argv = [self.client, "build", "--network", "host", "--force-rm", "--tag", tag]
        for key, value in sorted(labels.items()):
            argv += ["--label", f"{key}={value}"]
        shell.run(f"build image {tag}", [*argv, str(context)], log=log)

    def import_tarball(self, tarball: Path, tag: str, log: Path) -> None:
        argv = [self.client, "import", "--change", 'CMD ["bash"]', str(tarball), tag]
        shell.run(f"import image {tag}", argv, log=log)

    def run_output(self, image: str, argv: list[str]) -> str | None:
        """stdout of a short command in a throwaway, offline container; None when it failed."""
        return self._quiet(["run", "--rm", "--network", "none", "--entrypoint", argv[0], image, *argv[1:]])

    def remove_container(self, name: str) -> None:
        """Force-remove a container; a container already gone is fine."""
        self._quiet(["rm", "--force", name])

    def container_names(self, prefix: str) -> list[str]:
        """Names of all containers, running or not, whose name starts with prefix."""
        out = self._quiet(["ps", "--all", "--filter", f"name=^{prefix}", "--format", "{{.Names}}"])
        return [name for name in (out or "").splitlines() if name.startswith(prefix)]

    def _quiet(self, args: list[str]) -> str | None:
        """Run a short client command: its stdout, or None when it failed."""
        try:
            result = subprocess.run(
                [self.client, *args], capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60
            )
        except (FileNotFoundError, subprocess.TimeoutExpired):
            return None
        return result.stdout.strip() if result.returncode == 0 else None
