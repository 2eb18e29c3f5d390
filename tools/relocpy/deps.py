"""Build the static dependencies of a plan, each cached by its inputs' hash.

A dependency's key hashes its recipe, its build template, the source file
actually used, the toolchain and the keys of what it depends on, so changing
one recipe rebuilds only it and what depends on it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import fcntl
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from relocpy.fetch import FetchedSource
from relocpy.models import BuildPlan, DependencyStep
from relocpy.progress import info, step
from relocpy.runners import Mounts, Runner
from relocpy.templates import render
from relocpy.toolchain import step_env, toolchain_identity

COMPLETE_MARKER = "complete.json"


@contextmanager
def cache_entry_lock(entry: Path):
    """Hold an exclusive lock on a cache entry while it is checked and built,
    so two builds sharing a cache never write the same entry at once."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    with open(entry.parent / f".{entry.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass(frozen=True)
class StepContext:
    """What every build step needs besides its own inputs."""

    cache_dir: Path
    work_dir: Path
    runner: Runner
    runner_identity: str
    toolchain: dict[str, str]
    jobs: int
    source_date_epoch: int
    toolchain_mounts: tuple[Path, ...] = ()  # read-only: where the compilers live (not keyed)

    def base_env(self, work: Path) -> dict[str, str]:
        return {
            **self.toolchain,
            **step_env(self.toolchain, work),
            "JOBS": str(self.jobs),
            "SOURCE_DATE_EPOCH": str(self.source_date_epoch),
        }

    def mounts(self, read_only: list[Path], writable: list[Path]) -> Mounts:
        return Mounts(read_only=[*read_only, *self.toolchain_mounts], writable=writable)


class BuiltDependency(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    version: str
    key: str
    prefix: Path
    source: FetchedSource


def build_dependencies(
    plan: BuildPlan, sources: dict[str, FetchedSource], ctx: StepContext
) -> list[BuiltDependency]:
    built: dict[str, BuiltDependency] = {}
    for dep_step in plan.dependencies:
        built[dep_step.dependency.name] = _build_one(plan, dep_step, sources, built, ctx)
    return list(built.values())


def dependency_key(
    dep_step: DependencyStep, script: str, source: FetchedSource, inputs: list[BuiltDependency], ctx: StepContext
) -> str:
    """The rendered script stands for the templates (and what they include)."""
    blob = {
        "step": dep_step.model_dump(mode="json"),
        "script": hashlib.sha256(script.encode()).hexdigest(),
        "source_sha256": source.source.sha256,
        "toolchain": toolchain_identity(ctx.toolchain),
        "runner": ctx.runner_identity,
        "inputs": sorted(d.key for d in inputs),
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()


def _build_one(plan, dep_step, sources, built, ctx: StepContext) -> BuiltDependency:
    dep = dep_step.dependency
    inputs = [built[name] for name in dep_step.depends]
    source = sources[dep.name]
    script_text = render(f"deps/{dep.template}.sh.j2", name=dep.name, version=dep.version, target=plan.target)
    key = dependency_key(dep_step, script_text, source, inputs, ctx)
    out = ctx.cache_dir / "deps" / f"{dep.name}-{dep.version}-{key[:16]}"
    result = BuiltDependency(name=dep.name, version=dep.version, key=key, prefix=out / "prefix", source=source)
    with cache_entry_lock(out):
        if (out / COMPLETE_MARKER).is_file():
            info(f"    {dep.name} {dep.version}: cached ({key[:12]})")
            return result
        _run_dependency_build(plan, dep, script_text, source, inputs, result, out, ctx)
    return result


def _run_dependency_build(plan, dep, script_text, source, inputs, result, out, ctx) -> None:
    with step(f"build {dep.name} {dep.version}"):
        if out.exists():
            shutil.rmtree(out)  # an earlier attempt died half-way
        work = ctx.work_dir / dep.name
        shutil.rmtree(work, ignore_errors=True)
        deps_prefix = merge_prefixes(inputs, work / "deps")
        script = work / "build.sh"
        script.write_text(script_text)
        env = {
            **ctx.base_env(work),
            "SRC": str(source.path),
            "WORK": str(work),
            "PREFIX": str(result.prefix),
            "DEPS": str(deps_prefix),
        }
        result.prefix.mkdir(parents=True)
        mounts = ctx.mounts(read_only=[source.path.parent], writable=[work, out])
        ctx.runner.run_script(f"build {dep.name}", script, env, mounts, log=work / "build.log")
        _normalise_prefix(result.prefix)
        shutil.copyfile(work / "build.log", out / "build.log")
        (out / COMPLETE_MARKER).write_text(json.dumps({"name": dep.name, "version": dep.version, "key": result.key}))


def merge_prefixes(built: list[BuiltDependency], into: Path) -> Path:
    """One prefix holding the given dependencies' files (what a build sees as DEPS)."""
    into.mkdir(parents=True, exist_ok=True)
    for dep in built:
        shutil.copytree(dep.prefix, into, symlinks=True, dirs_exist_ok=True)
    return into


def _normalise_prefix(prefix: Path) -> None:
    """Make a prefix usable wherever it is merged: relative pkg-config files, no libtool archives."""
    for la in prefix.rglob("*.la"):
        la.unlink()
    for pc in prefix.rglob("*.pc"):
        text = pc.read_text().replace(str(prefix), "${pcfiledir}/../..")
        lines = ["prefix=${pcfiledir}/../.." if line.startswith("prefix=") else line for line in text.splitlines()]
        pc.write_text("\n".join(lines) + "\n")
    for unwanted in ("share/man", "share/doc", "share/info", "bin"):
        shutil.rmtree(prefix / unwanted, ignore_errors=True)
