"""Base images made locally: debootstrap a Debian suite and import it.

No registry is needed: `debootstrap --variant=minbase` fetches packages from a
Debian mirror, and `docker import` turns the tree into an image. A machine that
can pull official images may tag one of those instead (see docs/docker.md).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from relocpy import shell
from relocpy.engine import DockerEngine
from relocpy.errors import EngineError, UnknownNameError

DEBOOTSTRAP_SCRIPTS = Path("/usr/share/debootstrap/scripts")


class BootstrapRequest(BaseModel):
    model_config = ConfigDict(frozen=True)

    suite: str
    tag: str
    mirror: str | None = None  # None: debootstrap's default mirror
    force: bool = False


def default_tag(suite: str) -> str:
    return f"relocpy-{suite}"


def bootstrap_base(request: BootstrapRequest, log: Path, engine: DockerEngine | None = None) -> bool:
    """Make the base image; False when it already existed and was kept."""
    engine = engine or DockerEngine()
    engine.ensure_engine()
    if not request.force and engine.image_id(request.tag) is not None:
        return False
    _check_debootstrap(request.suite)
    with tempfile.TemporaryDirectory(prefix="relocpy-rootfs-") as scratch:
        rootfs, tarball = Path(scratch) / "rootfs", Path(scratch) / "rootfs.tar"
        shell.run(f"debootstrap {request.suite}", debootstrap_argv(request, rootfs), log=log)
        _drop_package_cache(rootfs)
        shell.run("pack rootfs", ["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(tarball), "."], log=log)
        engine.import_tarball(tarball, request.tag, log)
    return True


def debootstrap_argv(request: BootstrapRequest, rootfs: Path) -> list[str]:
    argv = ["debootstrap", "--variant=minbase", request.suite, str(rootfs)]
    return argv + ([request.mirror] if request.mirror else [])


def _check_debootstrap(suite: str) -> None:
    if shutil.which("debootstrap") is None:
        raise EngineError("debootstrap is not installed: `apt-get install debootstrap` (or run `.ci/start-docker`)")
    if os.geteuid() != 0:
        raise EngineError("debootstrap needs root: run `relocpy image bootstrap` as root (e.g. with sudo)")
    if not (DEBOOTSTRAP_SCRIPTS / suite).exists():
        raise UnknownNameError(f"unknown suite '{suite}': debootstrap has no script for it in {DEBOOTSTRAP_SCRIPTS}")


def _drop_package_cache(rootfs: Path) -> None:
    """The downloaded .debs are half the tree and useless in an image."""
    for deb in (rootfs / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()
