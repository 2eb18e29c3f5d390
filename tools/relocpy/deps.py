"""Build the static dependencies of a plan: one cached step each.

A dependency's step is keyed by its recipe, its rendered build script, the
source file actually used, the runner and its environment (the toolchain's
among it) and the keys of what it depends on (see steps.py), so changing one
recipe rebuilds only it and what depends on it.
"""

from __future__ import annotations

import shutil
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from relocpy import shell
from relocpy.fetch import FetchedSource
from relocpy.models import BuildPlan, DependencyStep
from relocpy.steps import Dir, Script, Step, StepContext, StepResult, run_step
from relocpy.templates import render
from relocpy.toolchain import configure_host


class BuiltDependency(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    version: str
    source: FetchedSource
    step: StepResult

    @property
    def key(self) -> str:
        return self.step.key

    @property
    def prefix(self) -> Path:
        return self.step.output


# Dependencies built side by side. Much of a dependency's build uses one core
# (configure, sqlite's one-file library, OpenSSL's perl): on two cores, one
# at a time left them idle a third of the time (measured, docs/building.md).
DEPENDENCY_WORKERS = 2


def build_dependencies(
    plan: BuildPlan, sources: dict[str, FetchedSource], ctx: StepContext
) -> list[BuiltDependency]:
    """Every dependency's step, each once those it depends on are built, up to
    DEPENDENCY_WORKERS at a time; in the plan's order. When one fails, those running
    finish (their cache entries are kept for the next attempt) and its error
    is raised; when interrupted, their processes are stopped."""
    waiting = list(plan.dependencies)
    built: dict[str, BuiltDependency] = {}
    running: dict[Future, str] = {}
    failure: BaseException | None = None

    def build_one(dep_step: DependencyStep) -> BuiltDependency:
        name = dep_step.dependency.name
        inputs = [built[needed] for needed in dep_step.depends]
        result = run_step(dependency_step(plan, dep_step, sources[name], inputs), ctx)
        return BuiltDependency(name=name, version=dep_step.dependency.version, source=sources[name], step=result)

    with ThreadPoolExecutor(max_workers=DEPENDENCY_WORKERS, thread_name_prefix="deps") as pool:
        try:
            while running or (waiting and failure is None):
                ready = [d for d in waiting if all(needed in built for needed in d.depends)]
                if not ready and not running:  # resolve_plan orders them: this is a bug
                    raise RuntimeError(f"dependencies that can never start: {[d.dependency.name for d in waiting]}")
                if failure is not None:  # start nothing more; wait for the running ones
                    ready = []
                for dep_step in ready[: DEPENDENCY_WORKERS - len(running)]:
                    waiting.remove(dep_step)
                    running[pool.submit(build_one, dep_step)] = dep_step.dependency.name
                # A timeout: Ctrl-C is handled between waits, wherever the signal landed.
                done, _ = wait(running, timeout=1, return_when=FIRST_COMPLETED)
                for future in done:
                    name = running.pop(future)
                    try:
                        built[name] = future.result()
                    except Exception as exc:
                        failure = failure or exc
        except BaseException:  # interrupted: the workers' processes do not see it
            shell.stop_all()
            raise
    if failure is not None:
        raise failure
    return [built[d.dependency.name] for d in plan.dependencies]


def dependency_step(
    plan: BuildPlan, dep_step: DependencyStep, source: FetchedSource, inputs: list[BuiltDependency]
) -> Step:
    dep = dep_step.dependency
    script = render(f"deps/{dep.template}.sh.j2", name=dep.name, version=dep.version, target=plan.target,
                    configure_host=configure_host(plan.target))
    return Step(
        kind="deps",
        name=f"{dep.name}-{dep.version}",
        title=f"build {dep.name} {dep.version}",
        inputs={"dependency": dep_step.model_dump(mode="json"), "source_sha256": source.source.sha256},
        merged=tuple(d.step for d in inputs),
        run=Script(
            text=script,
            env={"SRC": str(source.path), "PREFIX": Dir.OUTPUT},
            read_only=(source.path.parent,),
            finish=normalise_prefix,
        ),
    )


def normalise_prefix(prefix: Path) -> None:
    """Make a prefix usable wherever it is merged: relative pkg-config files, no libtool archives."""
    for la in prefix.rglob("*.la"):
        la.unlink()
    for pc in prefix.rglob("*.pc"):
        text = pc.read_text().replace(str(prefix), "${pcfiledir}/../..")
        lines = ["prefix=${pcfiledir}/../.." if line.startswith("prefix=") else line for line in text.splitlines()]
        pc.write_text("\n".join(lines) + "\n")
    for unwanted in ("share/man", "share/doc", "share/info", "bin"):
        shutil.rmtree(prefix / unwanted, ignore_errors=True)
