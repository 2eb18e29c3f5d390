"""Configure, build and install CPython against the built dependencies.

The installed tree is cached by the hash of the plan, the dependencies' keys,
the source used and the runner, so a rebuild with nothing changed reuses it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from relocpy.deps import COMPLETE_MARKER, BuiltDependency, StepContext, cache_entry_lock, merge_prefixes
from relocpy.fetch import FetchedSource
from relocpy.models import BuildPlan
from relocpy.paths import patches_dir
from relocpy.progress import info, step
from relocpy.templates import render
from relocpy.toolchain import toolchain_identity

# The configure prefix. Nothing may keep it after relocation; the validator
# refuses any file that still names it.
INSTALL_PREFIX = "/opt/relocpy-build-prefix/python"


class BuiltPython(BaseModel):
    model_config = ConfigDict(frozen=True)

    key: str
    destdir: Path  # `make install DESTDIR=`: the tree is destdir + INSTALL_PREFIX
    log: Path

    @property
    def tree(self) -> Path:
        return self.destdir / INSTALL_PREFIX.lstrip("/")

    @property
    def license_file(self) -> Path:
        return self.destdir / "LICENSE.cpython.txt"


def cpython_key(plan: BuildPlan, script: str, source: FetchedSource, deps: list[BuiltDependency], ctx: StepContext) -> str:
    blob = {
        "plan": plan.content_hash,
        "script": hashlib.sha256(script.encode()).hexdigest(),
        "source": source.source.sha256,
        "deps": [d.key for d in deps],
        "toolchain": toolchain_identity(ctx.toolchain),
        "runner": ctx.runner_identity,
        "prefix": INSTALL_PREFIX,
        "source_date_epoch": ctx.source_date_epoch,
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()


def build_cpython(
    plan: BuildPlan, source: FetchedSource, deps: list[BuiltDependency], ctx: StepContext
) -> BuiltPython:
    script_text = render(
        "cpython.sh.j2",
        name="cpython",
        version=plan.python.version,
        target=plan.target,
        patches=plan.patches,
        configure_flags=plan.configure_flags,
        excluded_modules=plan.excluded_modules,
        configure_env=plan.python.configure_env,
    )
    key = cpython_key(plan, script_text, source, deps, ctx)
    out = ctx.cache_dir / "cpython" / f"{plan.python.version}-{plan.variant.name}-{key[:16]}"
    built = BuiltPython(key=key, destdir=out / "destdir", log=out / "build.log")
    with cache_entry_lock(out):
        if (out / COMPLETE_MARKER).is_file():
            info(f"    CPython {plan.python.version} ({plan.variant.name}): cached ({key[:12]})")
        else:
            _run_cpython_build(plan, script_text, source, deps, built, out, ctx)
    return built


def _run_cpython_build(plan, script_text, source, deps, built, out, ctx) -> None:
    with step(f"build CPython {plan.python.version} ({plan.variant.name}, -j{ctx.jobs})"):
        shutil.rmtree(out, ignore_errors=True)
        work = ctx.work_dir / "cpython"
        shutil.rmtree(work, ignore_errors=True)
        deps_prefix = merge_prefixes(deps, work / "deps")
        script = work / "build.sh"
        script.write_text(script_text)
        env = {
            **ctx.base_env(work),
            "SRC": str(source.path),
            "WORK": str(work),
            "DEPS": str(deps_prefix),
            "PATCHES": str(patches_dir()),
            "INSTALL_PREFIX": INSTALL_PREFIX,
            "DESTDIR": str(built.destdir),
            "PREFIX": INSTALL_PREFIX,
        }
        built.destdir.mkdir(parents=True)
        mounts = ctx.mounts(read_only=[source.path.parent, patches_dir()], writable=[work, out])
        ctx.runner.run_script("build CPython", script, env, mounts, log=work / "build.log")
        shutil.copyfile(work / "build.log", built.log)
        (out / COMPLETE_MARKER).write_text(json.dumps({"python": plan.python.version, "key": built.key}))
