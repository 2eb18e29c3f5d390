"""Configure, build and install CPython against the built dependencies: one
cached step, keyed by the plan, the rendered script, the source used, the
dependencies' keys, the runner and its environment (see steps.py)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from relocpy.deps import BuiltDependency
from relocpy.fetch import FetchedSource
from relocpy.models import BuildPlan
from relocpy.paths import patches_dir
from relocpy.steps import Dir, Script, Step, StepContext, StepResult, run_step
from relocpy.templates import render

# The configure prefix. Nothing may keep it after relocation; the validator
# refuses any file that still names it.
INSTALL_PREFIX = "/opt/relocpy-build-prefix/python"


class BuiltPython(BaseModel):
    model_config = ConfigDict(frozen=True)

    step: StepResult

    @property
    def key(self) -> str:
        return self.step.key

    @property
    def destdir(self) -> Path:
        """`make install DESTDIR=`: the tree is destdir + INSTALL_PREFIX."""
        return self.step.output

    @property
    def log(self) -> Path:
        return self.step.log

    @property
    def tree(self) -> Path:
        return self.destdir / INSTALL_PREFIX.lstrip("/")

    @property
    def license_file(self) -> Path:
        return self.destdir / "LICENSE.cpython.txt"


def build_cpython(
    plan: BuildPlan, source: FetchedSource, deps: list[BuiltDependency], ctx: StepContext
) -> BuiltPython:
    return BuiltPython(step=run_step(cpython_step(plan, source, deps, ctx.jobs), ctx))


def cpython_step(plan: BuildPlan, source: FetchedSource, deps: list[BuiltDependency], jobs: int) -> Step:
    script = render(
        "cpython.sh.j2",
        name="cpython",
        version=plan.python.version,
        target=plan.target,
        patches=plan.patches,
        configure_flags=plan.configure_flags,
        excluded_modules=plan.excluded_modules,
        configure_env=plan.python.configure_env,
    )
    return Step(
        kind="cpython",
        name=f"cpython-{plan.python.version}-{plan.variant.name}",
        title=f"build CPython {plan.python.version} ({plan.variant.name}, -j{jobs})",
        inputs={"plan": plan.content_hash, "source_sha256": source.source.sha256},
        merged=tuple(d.step for d in deps),
        run=Script(
            text=script,
            env={
                "SRC": str(source.path),
                "PATCHES": str(patches_dir()),
                "INSTALL_PREFIX": INSTALL_PREFIX,
                "PREFIX": INSTALL_PREFIX,
                "DESTDIR": Dir.OUTPUT,
            },
            read_only=(source.path.parent, patches_dir()),
        ),
    )
