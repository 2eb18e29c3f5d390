"""The build pipeline for one plan: fetch, dependencies, CPython, relocate,
validate, package, and only then publish the archives into --dist."""

from __future__ import annotations

import calendar
import dataclasses
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, field_validator

from relocpy.artifacts import validate_archive
from relocpy.cpython import BuiltPython, build_cpython
from relocpy.deps import build_dependencies
from relocpy.emulation import require_runnable
from relocpy.errors import ValidationFailed
from relocpy.extras import Lazy
from relocpy.fetch import fetch_all
from relocpy.models import ArtifactMetadata, BuildPlan, check_build_tag
from relocpy.pgo import find_pgo_tools, trains_in_own_step
from relocpy.package import bundled_components, license_texts, write_archives, write_metadata
from relocpy.progress import info, step
from relocpy.relocate import relocate
from relocpy.runners import get_runner
from relocpy.settings import FetchSettings
from relocpy.steps import PythonCall, Step, StepContext, run_step
from relocpy.toolchain import StripTool, strip_tool, toolchain_env, toolchain_mounts
from relocpy.validate import ValidationReport, check_files, tag_of, validation_policy

elf = Lazy("build", "relocpy.elf")  # pyelftools

# The list of archives _finish writes beside them, read back on a cache hit.
# (Not the step's completion marker: that is steps.COMPLETE_MARKER, one level up.)
COMPLETE_MARKER = "archives.json"


class BuildOptions(BaseModel):
    model_config = ConfigDict(frozen=True)

    runner: str
    dist: Path
    build_tag: str
    jobs: int
    keep_work: bool = False
    source_date_epoch: int

    @field_validator("build_tag")
    @classmethod
    def _names_can_carry_it(cls, tag: str) -> str:
        return check_build_tag(tag)  # before hours of building, not at packaging


def default_build_tag() -> str:
    return time.strftime("%Y%m%d", time.gmtime())


def default_source_date_epoch(build_tag: str) -> int:
    """SOURCE_DATE_EPOCH if set, else midnight UTC of a YYYYMMDD build tag, else
    a fixed date: the same inputs and tag always give the same timestamps."""
    if os.environ.get("SOURCE_DATE_EPOCH"):
        return int(os.environ["SOURCE_DATE_EPOCH"])
    try:
        return calendar.timegm(time.strptime(build_tag[:8], "%Y%m%d"))
    except ValueError:
        return 1767225600  # 2026-01-01T00:00:00Z


def run_build(plan: BuildPlan, options: BuildOptions, fetch_settings: FetchSettings) -> list[ArtifactMetadata]:
    if plan.platform is not None:
        require_runnable(plan.platform)  # validation will run it: can this host (qemu, a libc root...)?
    strip = strip_tool(plan.target)  # before hours of building: is it here?
    pgo_tools = find_pgo_tools(plan.target) if trains_in_own_step(plan) else None  # and these?
    runner = get_runner(options.runner, plan.target)
    cache_dir = fetch_settings.cache_dir
    # Per runner: a native and a container build of one plan may run at once.
    work_dir = cache_dir / "work" / f"{plan.content_hash[:16]}-{runner.name}"
    ctx = StepContext(
        cache_dir=cache_dir,
        work_dir=work_dir,
        runner=runner,
        toolchain=toolchain_env(plan.target, plan.cpu_level),
        toolchain_mounts=tuple(toolchain_mounts(plan.target)),
        jobs=options.jobs,
        source_date_epoch=options.source_date_epoch,
    )
    try:
        with step("fetch sources"):
            fetched = {f.component: f for f in fetch_all(plan.all_sources(), fetch_settings)}
        build_python = _build_machine_python(plan.build_python, fetched, ctx) if plan.build_python else None
        deps = build_dependencies(plan, fetched, ctx)
        built = build_cpython(plan, fetched["cpython"], deps, ctx, pgo_tools, build_python)
        # The step's lock also keeps two builds of one plan out of its staging directory.
        packaged = run_step(_packaging_step(plan, built, deps, fetched, ctx, options, strip), ctx)
        artifacts = _load_artifacts(packaged.output)
        publish_to_dist(artifacts, packaged.output, options.dist)
    finally:
        runner.close()
    if not options.keep_work:
        shutil.rmtree(work_dir, ignore_errors=True)
    return artifacts


def _build_machine_python(plan: BuildPlan, fetched, ctx: StepContext) -> BuiltPython:
    """The interpreter a cross build runs: the build machine's target built
    with its own toolchain, as its native build would be (the same steps and
    keys: one cache entry serves both)."""
    native = dataclasses.replace(ctx, toolchain=toolchain_env(plan.target, plan.cpu_level),
                                 toolchain_mounts=tuple(toolchain_mounts(plan.target)))
    deps = build_dependencies(plan, fetched, native)
    return build_cpython(plan, fetched["cpython"], deps, native)


# Validation order: the flavor installers and uv pick first, CPython's own
# tests (on the flavor that carries them) last.
VALIDATION_ORDER = ("install_only_stripped", "install_only", "full")


def _finish(plan, built, deps, fetched, ctx, options, strip: StripTool, finished: Path) -> list[ArtifactMetadata]:
    """Relocate, package, and validate every archive as it ships, into `finished`
    (a cache entry). An archive that fails leaves nothing there: the archives
    move to the work directory (kept on failure) for a look."""
    with step("relocate"):
        tree = relocate(built, ctx.work_dir / "staging", deps, ctx.work_dir)
    build_paths = [str(ctx.cache_dir), str(built.destdir), str(ctx.work_dir), *(str(d.prefix) for d in deps)]
    policy = validation_policy(plan, build_paths)
    with step("check the relocated tree"):
        summary = check_files(tree, policy)
        platform_tag = tag_of(summary, policy)
        info(f"    platform tag {platform_tag} by policy {policy.platform.name}"
             + (f" (highest symbol version {policy.platform.libc_versions}_{summary.libc_max})" if summary.libc_max else ""))
    shutil.rmtree(finished, ignore_errors=True)
    try:
        with step("package"):
            components = bundled_components(plan, fetched)
            archives = write_archives(
                tree, plan, platform_tag, options.build_tag, options.source_date_epoch,
                license_texts(built.license_file, fetched), components, strip, finished,
            )
        reports = {}
        for flavor in VALIDATION_ORDER:
            with step(f"validate {archives[flavor].name}"):
                reports[flavor] = validate_archive(archives[flavor], policy, regression_tests=flavor == "full")
                _check_agrees(archives[flavor].name, reports[flavor], reports[VALIDATION_ORDER[0]], platform_tag)
        artifacts = write_metadata(archives, plan, policy, reports[VALIDATION_ORDER[0]], components, options.source_date_epoch)
        (finished / COMPLETE_MARKER).write_text(json.dumps([a.name for a in artifacts]))
    except BaseException:
        _set_aside(finished, ctx.work_dir / "rejected-archives")
        raise
    return artifacts


def _check_agrees(name: str, report: ValidationReport, first: ValidationReport, platform_tag: str) -> None:
    """Every flavor is the same interpreter: same platform and wheel tags."""
    if report.platform_tag != platform_tag:
        raise ValidationFailed(f"validation failed: {name}: its files need {report.platform_tag}, not {platform_tag}")
    if (report.python_tag, report.abi_tag, report.wheel_tags, report.measured) != (
        first.python_tag, first.abi_tag, first.wheel_tags, first.measured
    ):
        raise ValidationFailed(f"validation failed: {name}: its interpreter reports other tags than the other flavors")


def _set_aside(finished: Path, rejected: Path) -> None:
    shutil.rmtree(rejected, ignore_errors=True)
    if finished.is_dir():
        rejected.parent.mkdir(parents=True, exist_ok=True)
        finished.rename(rejected)
        info(f"    archives that did not pass are kept in {rejected}")


def _packaging_step(plan, built, deps, fetched, ctx, options: BuildOptions, strip: StripTool) -> Step:
    """The archives depend on the built tree, the tag, the epoch, the strip
    tool and the code that relocates, validates and packages it."""
    return Step(
        kind="artifacts",
        name=f"package-{plan.python.version}-{plan.variant.name}",
        title="relocate, validate and package",
        inputs={
            "build_tag": options.build_tag, "source_date_epoch": options.source_date_epoch, "strip": strip.identity,
            # what validation holds the archives to: the platform policy and
            # known test failures are parts of the plan its hash leaves out
            "plan": plan.model_dump(mode="json"),
        },
        given={"cpython": built.step},
        run=PythonCall(
            lambda dirs: _finish(plan, built, deps, fetched, ctx, options, strip, dirs.output),
            code=_stages_code_digest(),
        ),
    )


def _stages_code_digest() -> str:
    digest = hashlib.sha256()
    here = Path(__file__).parent
    for path in sorted([*here.glob("*.py"), *(here / "checks").glob("*")]):
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _load_artifacts(finished: Path) -> list[ArtifactMetadata]:
    names = json.loads((finished / COMPLETE_MARKER).read_text())
    return [ArtifactMetadata.model_validate_json((finished / f"{name}.json").read_text()) for name in names]


def publish_to_dist(artifacts: list[ArtifactMetadata], out: Path, dist: Path) -> None:
    """Copy finished archives and metadata into dist: all are staged under
    hidden names first, then renamed, so dist never shows a partial file."""
    dist.mkdir(parents=True, exist_ok=True)
    names = [n for meta in artifacts for n in (meta.name, meta.name + ".json")]
    staged = []
    try:
        for name in names:
            tmp = dist / f".{name}.partial"
            shutil.copyfile(out / name, tmp)
            staged.append((tmp, dist / name))
        for tmp, final in staged:
            tmp.replace(final)
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
    for meta in artifacts:
        info(f"    {dist / meta.name}  ({meta.size / 1e6:.1f} MB, sha256 {meta.sha256[:16]}…)")
