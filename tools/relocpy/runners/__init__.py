"""Runners execute rendered build scripts: on the host or in a container.

A runner gets a script, its environment and the directories it may touch; the
build logic itself lives in the templates under build/. Paths are the same
inside and outside (a container mounts each directory at its host path), so
scripts, logs and cached outputs never need translating.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, ConfigDict

from relocpy.errors import UnknownNameError
from relocpy.models import Target


class Mounts(BaseModel):
    model_config = ConfigDict(frozen=True)

    read_only: list[Path]  # sources, templates' inputs
    writable: list[Path]  # the step's work and output directories


class Runner(Protocol):
    name: str

    def identity(self) -> str:
        """Where scripts run, as step keys see it: a change here makes new keys."""

    def environment(self) -> dict[str, str]:
        """What the runner adds to a script's environment (keyed with the rest)."""

    def run_script(self, step: str, script: Path, env: dict[str, str], mounts: Mounts, log: Path) -> None:
        """Run `bash script` with env and the runner's environment, nothing
        else; raise StepFailed with the log tail on failure."""

    def close(self) -> None:
        """Release anything the runner holds (containers, images in use)."""


def get_runner(name: str, target: Target) -> Runner:
    if name == "native":
        from relocpy.runners.native import NativeRunner

        return NativeRunner()
    if name == "docker":
        from relocpy.runners.docker import DockerRunner

        return DockerRunner(target)
    raise UnknownNameError(f"unknown runner '{name}' (known: docker, native)")
