"""Verbs for CI: the matrix, the generated workflows, and each step the
workflows run, so a release manager can run the same steps on a host."""

from __future__ import annotations

from pathlib import Path

from invoke import task

from relocpy import ci
from relocpy.cli.options import print_json
from relocpy.paths import ci_dir, project_root
from relocpy.progress import info
from relocpy.recipes import load_recipes

MATRIX_HELP = {
    "json": "print the matrix as JSON",
    "event": "push (every buildable cell) or pull_request (the small subset in ci/settings.toml)",
    "build_tag": "build tag the artifacts carry (default: the UTC date of the checked-out commit)",
    "github_output": "also append the shards as step outputs to this file (GitHub's $GITHUB_OUTPUT)",
}
CELL_HELP = {
    "python": "only cells of this python (default: every one)",
    "target": "only cells of this target triple",
    "variant": "only cells of this variant",
    "event": "push (the full matrix, default) or pull_request (the subset)",
    "build_tag": "build tag (default: the UTC date of the checked-out commit)",
    "dist": "directory for the archives and their metadata (default: dist)",
    "image_cache": "directory holding a saved builder image (loaded if present, saved after bootstrap)",
}
LOG_DIR = Path("work") / "logs" / "ci"  # step logs, beside (not inside) dist/
RELEASE_HELP = {
    "dist": "directory holding every archive and its metadata (default: dist)",
    "base_url": "base URL the index's relative artifact URLs resolve against",
    "sign": "Ed25519 private key file that signs the index",
    "to": "where to publish, e.g. s3://bucket/prefix",
}


def _settings() -> ci.CiSettings:
    return ci.load_settings(ci_dir())


def _matrix(event: str, build_tag: str | None) -> ci.Matrix:
    tag = ci.resolve_build_tag(build_tag, project_root())
    return ci.build_matrix(load_recipes(), _settings(), event, tag)


@task(help=MATRIX_HELP)
def matrix(c, json=False, event="push", build_tag=None, github_output=None):
    """Every buildable target x python x variant with its runner, cut into shards of at most 256 jobs."""
    computed = _matrix(event, build_tag)
    if github_output:
        with open(github_output, "a", encoding="utf-8") as handle:
            handle.write(ci.github_outputs(computed, _settings().matrix.max_shards))
    if json:
        print_json({
            "event": computed.event,
            "build_tag": computed.build_tag,
            "cells": len(computed.cells),
            "shards": [{"include": [cell.model_dump(by_alias=True) for cell in s]} for s in computed.shards],
        })
        return
    for index, cells in enumerate(computed.shards):
        for cell in cells:
            print(f"shard {index}  {cell.python:<9} {cell.target:<28} {cell.variant:<22} {cell.runs_on} ({cell.builder})")
    print(f"{len(computed.cells)} cells in {len(computed.shards)} shard(s) for {event}, build tag {computed.build_tag}")


@task(help={"check": "write nothing; exit non-zero naming the first workflow that differs"})
def generate(c, check=False):
    """Render .github/workflows/ from ci/templates/ and ci/settings.toml."""
    root = project_root()
    if check:
        ci.check_workflows(root)
        print("workflows match ci/templates")
        return
    changed = ci.write_workflows(root)
    for path in changed:
        print(f"wrote {path.relative_to(root)}")
    if not changed:
        print("workflows already up to date")


@task
def engine(c):
    """Make sure a Docker engine answers, starting the system service if needed."""
    ci.ensure_engine()
    info("docker engine ready")


@task(help={"cache_dir": CELL_HELP["image_cache"]})
def image(c, cache_dir=None):
    """Load the builder image from a saved archive, or bootstrap it (and save it)."""
    _builder_image(_settings(), Path(cache_dir) if cache_dir else None)


def _builder_image(settings: ci.CiSettings, cache_dir: Path | None) -> None:
    from relocpy import shell

    log_dir = LOG_DIR
    archive = ci.image_archive(cache_dir, settings) if cache_dir else None
    if archive and archive.is_file():
        shell.run("load builder image", ["docker", "load", "--input", str(archive)], log_dir / "image.log")
        return
    ci.run_steps([ci.cell_steps(settings)["bootstrap"]], {}, log_dir)
    if archive:
        archive.parent.mkdir(parents=True, exist_ok=True)
        shell.run("save builder image", ["docker", "save", "--output", str(archive), settings.image.tag],
                  log_dir / "image.log")


@task(help=CELL_HELP)
def cell(c, python=None, target=None, variant=None, event="push", build_tag=None, dist="dist", image_cache=None):
    """Run a build job's steps (engine, image, build, validate) for each matching matrix cell."""
    settings = _settings()
    computed = _matrix(event, build_tag)
    chosen = [
        x for x in computed.cells
        if (python is None or x.python == python or x.python.startswith(python + "."))
        and (target is None or x.target == target)
        and (variant is None or x.variant == variant)
    ]
    if not chosen:
        raise ci.CiError("no matrix cell matches (see `relocpy ci matrix`)")
    if any(x.docker for x in chosen):
        ci.ensure_engine()
        _builder_image(settings, Path(image_cache) if image_cache else None)
    steps = ci.cell_steps(settings)
    for x in chosen:
        values = {"PYTHON": x.python, "TARGET": x.target, "VARIANT": x.variant, "BUILDER": x.builder,
                  "BUILD_TAG": computed.build_tag, "DIST": dist}
        ci.run_steps([steps["build"], steps["validate"]], values, LOG_DIR / x.artifact)


@task(help=RELEASE_HELP)
def release(c, base_url, sign, to, dist="dist"):
    """Run the release job's steps: validate again, build and sign the index, publish."""
    steps = ci.release_steps(_settings())
    values = {"DIST": dist, "BASE_URL": base_url, "KEY_FILE": sign, "PUBLISH_URL": to}
    ci.run_steps(list(steps.values()), values, LOG_DIR / "release")


COLLECTIONS = {"ci": [matrix, generate, engine, image, cell, release]}
