"""Verbs for building and validating interpreters."""

from __future__ import annotations

import os
from pathlib import Path

from invoke import task

from relocpy.artifacts import archives_to_validate, validate_artifact
from relocpy.errors import UsageError
from relocpy.build import BuildOptions, default_build_tag, default_source_date_epoch, run_build
from relocpy.cli.options import FETCH_HELP, PLAN_HELP, fetch_settings, require_python_and_target
from relocpy.plan import resolve_plan
from relocpy.progress import info
from relocpy.recipes import load_recipes


@task(
    iterable=["mirror"],
    help={
        **PLAN_HELP,
        **FETCH_HELP,
        "runner": "where to build: docker (a container from the target's builder image) or native (this host); "
        "default: the target's runner from the recipes",
        "dist": "directory receiving the archives and their metadata (default: dist/)",
        "build_tag": "release tag in artifact names, e.g. 20261124 (default: today's UTC date)",
        "jobs": "parallel compile jobs (default: number of CPUs)",
        "keep_work": "keep the work directory (sources, logs) after a successful build",
    },
)
def build(
    c, python=None, target=None, variant=None, runner=None, dist="dist", build_tag=None, jobs=None,
    keep_work=False, mirror=None, cache_dir=None, offline=False,
):
    """Build, relocate, validate and package one interpreter into --dist."""
    plan = resolve_plan(load_recipes(), *require_python_and_target(python, target), variant)
    build_tag = build_tag or default_build_tag()
    options = BuildOptions(
        runner=runner or plan.target.runner,
        dist=Path(dist).absolute(),
        build_tag=build_tag,
        jobs=int(jobs or os.cpu_count() or 2),
        keep_work=keep_work,
        source_date_epoch=default_source_date_epoch(build_tag),
    )
    info(f"building CPython {plan.python.version} ({plan.variant.name}) for {plan.target.triple} "
         f"with the {options.runner} runner; plan {plan.content_hash[:16]}")
    run_build(plan, options, fetch_settings(mirror, cache_dir, offline))


@task(positional=["artifact"], help={"artifact": "an archive built by relocpy, or a directory: every archive in it"})
def validate(c, artifact=None):
    """Validate archives as a consumer gets them: unpack each at an awkward
    path, check every file (ELF rules, symbol versions, no build-machine path),
    move it, run it (CPython's own tests too, for a full archive)."""
    if not artifact:
        raise UsageError("validate needs an artifact: relocpy validate PATH")
    for archive in archives_to_validate(Path(artifact)):
        report = validate_artifact(archive)
        info(f"{archive}: valid ({report.platform_tag}, {len(report.checks)} runtime checks)")


TASKS = [build, validate]
