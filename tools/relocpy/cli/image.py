"""Verbs for container images: base images and builder images."""

from __future__ import annotations

from invoke import task

from relocpy.errors import UsageError
from relocpy.images import BootstrapRequest, bootstrap_base, default_tag
from relocpy.progress import info, step
from relocpy.recipes import get_target, load_recipes
from relocpy.runners.docker import DockerRunner
from relocpy.settings import user_cache_dir


def _require(verb: str, **flags) -> None:
    # Defaults of None keep these flags out of invoke's positional arguments,
    # which would otherwise swallow `--help`.
    for flag, value in flags.items():
        if not value:
            raise UsageError(f"{verb} needs --{flag}")


def _log(name: str):
    return user_cache_dir() / "logs" / f"{name}.log"


@task(
    name="bootstrap",
    help={
        "suite": "Debian suite to debootstrap, e.g. bullseye or bookworm",
        "tag": "image tag to create (default: relocpy-<suite>)",
        "mirror": "Debian mirror URL (default: debootstrap's own default)",
        "force": "rebuild even when the tag already exists",
    },
)
def image_bootstrap(c, suite=None, tag=None, mirror=None, force=False):
    """Make a minimal Debian base image with debootstrap and `docker import` (needs root)."""
    _require("image bootstrap", suite=suite)
    request = BootstrapRequest(suite=suite, tag=tag or default_tag(suite), mirror=mirror, force=force)
    log = _log(f"image-bootstrap-{suite}")
    with step(f"base image {request.tag}"):
        made = bootstrap_base(request, log)
    info(f"{request.tag}: {'created' if made else 'exists, kept (use --force to rebuild)'}  (log: {log})")


@task(name="build", help={"target": "target triple, e.g. x86_64-unknown-linux-gnu"})
def image_build(c, target=None):
    """Build the target's builder image now (runs also build it on first use)."""
    _require("image build", target=target)
    recipe = get_target(load_recipes(), target)
    log = _log(f"image-build-{target}")
    with step(f"builder image for {target}"):
        tag = DockerRunner(recipe).ensure_image(log)
    info(f"{target}: {tag}  (log: {log})")


COLLECTIONS = {"image": [image_bootstrap, image_build]}
