"""Build the static dependencies of a plan: one cached step each.

A dependency's step is keyed by its recipe, its rendered build script, the
source file actually used, the runner and its environment (the toolchain's
among it) and the keys of what it depends on (see steps.py), so changing one
recipe rebuilds only it and what depends on it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from pydantic import BaseModel, ConfigDict

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


def build_dependencies(
    plan: BuildPlan, sources: dict[str, FetchedSource], ctx: StepContext
) -> list[BuiltDependency]:
    built: dict[str, BuiltDependency] = {}
    for dep_step in plan.dependencies:
        name = dep_step.dependency.name
        inputs = [built[needed] for needed in dep_step.depends]
        result = run_step(dependency_step(plan, dep_step, sources[name], inputs), ctx)
        built[name] = BuiltDependency(name=name, version=dep_step.dependency.version, source=sources[name], step=result)
    return list(built.values())


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
