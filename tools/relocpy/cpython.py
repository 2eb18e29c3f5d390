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
from relocpy.pgo import MERGED_PROFILE, PgoTools, merge_profiles, trains_in_own_step
from relocpy.steps import Dir, Script, Step, StepContext, StepResult, run_step
from relocpy.templates import render
from relocpy.toolchain import wrappers_dir

# The configure prefix. Nothing may keep it after relocation; the validator
# refuses any file that still names it.
INSTALL_PREFIX = "/opt/relocpy-build-prefix/python"


class BuiltPython(BaseModel):
    model_config = ConfigDict(frozen=True)

    step: StepResult
    # A cross build's interpreter for the build machine, which it ran (and named
    # in its Makefile and sysconfig data: relocation removes those paths).
    build_python: BuiltPython | None = None

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
    plan: BuildPlan, source: FetchedSource, deps: list[BuiltDependency], ctx: StepContext,
    pgo_tools: PgoTools | None = None, build_python: BuiltPython | None = None,
) -> BuiltPython:
    """CPython's build step; for a PGO variant with zig, after the training
    step whose merged profile it is given (pgo.py); for a cross build, given
    the build machine's interpreter (`build_python`, built from plan.build_python)."""
    profile = None
    if trains_in_own_step(plan):
        if pgo_tools is None:
            raise ValueError("a PGO build needs the checked PGO tools (pgo.find_pgo_tools)")
        profile = run_step(training_step(plan, source, deps, ctx.jobs, pgo_tools), ctx)
    if plan.target.cross and build_python is None:
        raise ValueError("a cross build needs the build machine's interpreter (plan.build_python, built)")
    step = run_step(cpython_step(plan, source, deps, ctx.jobs, profile, build_python), ctx)
    return BuiltPython(step=step, build_python=build_python)


def cpython_step(
    plan: BuildPlan, source: FetchedSource, deps: list[BuiltDependency], jobs: int,
    profile: StepResult | None = None, build_python: BuiltPython | None = None,
) -> Step:
    env: dict[str, str | Dir] = {"DESTDIR": Dir.OUTPUT}
    given: dict[str, StepResult] = {}
    if profile is not None:
        env["LLVM_PROFDATA"] = str(wrappers_dir() / "llvm-profdata")  # configure wants one; nothing runs it
        given["PROFILE_DIR"] = profile
    if build_python is not None:
        given["BUILD_PYTHON"] = build_python.step  # its destdir: the template adds INSTALL_PREFIX
    cross = f", cross-built on {plan.target.build_on}" if plan.target.cross else ""
    return Step(
        kind="cpython",
        name=f"cpython-{plan.python.version}-{plan.variant.name}" + (f"-{plan.target.arch}" if plan.target.cross else ""),
        title=f"build CPython {plan.python.version} ({plan.variant.name}{cross}, -j{jobs})",
        inputs={"plan": plan.content_hash, "source_sha256": source.source.sha256},
        merged=tuple(d.step for d in deps),
        given=given,
        run=_script(plan, source, "use" if profile is not None else "", env),
    )


def training_step(
    plan: BuildPlan, source: FetchedSource, deps: list[BuiltDependency], jobs: int, tools: PgoTools
) -> Step:
    """The instrumented build and CPython's training task; its output is the
    merged profile. Keyed like the build, plus the LLVM that reads and writes
    profiles."""
    env: dict[str, str | Dir] = {
        "PROFILES": Dir.OUTPUT,
        "LLVM_PROFDATA": str(wrappers_dir() / "llvm-profdata"),
        "RELOCPY_PROFILE_RUNTIME": str(tools.runtime),
    }
    return Step(
        kind="profile",
        name=f"cpython-{plan.python.version}-{plan.variant.name}",
        title=f"train CPython {plan.python.version} for PGO (instrumented build, -j{jobs})",
        inputs={"plan": plan.content_hash, "source_sha256": source.source.sha256, **tools.identity},
        merged=tuple(d.step for d in deps),
        run=_script(plan, source, "train", env, read_only=(tools.runtime.parent,),
                    finish=lambda output: merge_profiles(tools, output)),
    )


def _script(plan: BuildPlan, source: FetchedSource, pgo: str, env: dict[str, str | Dir],
            read_only: tuple[Path, ...] = (), finish=None) -> Script:
    text = render(
        "cpython.sh.j2",
        name="cpython",
        version=plan.python.version,
        target=plan.target,
        patches=plan.patches,
        configure_flags=plan.configure_flags,
        excluded_modules=plan.excluded_modules,
        configure_env=plan.python.configure_env,
        pgo=pgo,
        merged_profile=MERGED_PROFILE,
        build_python_exe=f"{INSTALL_PREFIX}/bin/python{plan.python.minor}",  # in the build python's destdir
        python_minor=plan.python.minor,
    )
    return Script(
        text=text,
        env={
            "SRC": str(source.path),
            "PATCHES": str(patches_dir()),
            "INSTALL_PREFIX": INSTALL_PREFIX,
            "PREFIX": INSTALL_PREFIX,
            **env,
        },
        read_only=(source.path.parent, patches_dir(), *read_only),
        finish=finish,
    )
