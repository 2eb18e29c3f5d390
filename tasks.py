"""The release manager's flows, as invoke tasks: `invoke --list`.

Each task calls the library functions behind the `relocpy` command (and the
CI workflows); run them from the checkout with relocpy installed, e.g.
`.venv/bin/invoke check`.
"""

from __future__ import annotations

import os
import shlex
import sys
from contextlib import contextmanager
from pathlib import Path

from invoke import Exit, task

from relocpy import ci
from relocpy.errors import RecipeError, RelocpyError
from relocpy.paths import ci_dir, project_root
from relocpy.recipes import check_recipes, load_recipes

PYTHON = shlex.quote(sys.executable)
LOG_DIR = Path("work") / "logs" / "ci"  # as `relocpy ci release`


@contextmanager
def one_line_errors():
    """A user's error ends in one line and its exit code, as with `relocpy`."""
    try:
        yield
    except RelocpyError as exc:
        raise Exit(f"relocpy: error: {exc}", code=exc.exit_code) from None


@task
def check(c):
    """The recipes and their cross-references; the workflows against ci/templates."""
    with one_line_errors():
        problems = check_recipes(load_recipes())
        if problems:
            raise RecipeError("; ".join(problems))
        ci.check_workflows(project_root())
    print("recipes ok; workflows match ci/templates")


@task
def test(c):
    """The fast tests (no end-to-end build, no Docker engine)."""
    c.run(f"{PYTHON} -m pytest -q -m 'not e2e and not docker'")


@task(help={"event": "push (every buildable cell) or pull_request (the subset)",
            "build_tag": "default: the UTC date of the checked-out commit"})
def matrix(c, event="push", build_tag=None):
    """The CI matrix: every cell with its runner, shard by shard."""
    with one_line_errors():
        tag = ci.resolve_build_tag(build_tag, project_root())
        computed = ci.build_matrix(load_recipes(), ci.load_settings(ci_dir()), event, tag)
    for index, cells in enumerate(computed.shards):
        for cell in cells:
            print(f"shard {index}  {cell.python:<9} {cell.target:<28} {cell.variant:<22} {cell.runs_on} ({cell.builder})")
    print(f"{len(computed.cells)} cells in {len(computed.shards)} shard(s) for {event}, build tag {computed.build_tag}")


@task(help={"dist": "the archives and their metadata (default: dist)", "base_url": "where the index's URLs point",
            "sign": "Ed25519 private key file", "to": "a directory or s3://BUCKET/PREFIX"})
def release(c, base_url, sign, to, dist="dist"):
    """The release job's steps: validate again, build and sign the index, publish."""
    values = {"DIST": dist, "BASE_URL": base_url, "KEY_FILE": sign, "PUBLISH_URL": to}
    # The steps call `relocpy` as the workflow does: this interpreter's, venv activated or not.
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    with one_line_errors():
        steps = ci.release_steps(ci.load_settings(ci_dir()))
        ci.run_steps(list(steps.values()), values, LOG_DIR / "release")


@task(help={"what": "install (relocpy against uv, default), build, docker (both really build) or interp "
                    "(interpreter speed: pass the interpreters in --args)",
            "args": "arguments for the script, e.g. 'debian=/usr/bin/python3.11 ours=PATH' for interp"})
def bench(c, what="install", args=""):
    """One of the benchmarks in tools/bench_*.py."""
    script = project_root() / "tools" / f"bench_{what}.py"
    if not script.is_file():
        raise Exit(f"relocpy: error: no benchmark {what!r} (install, build, docker or interp)", code=2)
    c.run(f"{PYTHON} {shlex.quote(str(script))} {args}")
