"""End-to-end: one dependency built twice, from two empty caches in two
directories, gives the same bytes, and names neither directory.

zlib is the cheapest dependency that shows the difference: its static library
carries debug information, whose directories the compiler wrappers map to fixed
names. tools/check-reproducible does the same for a whole plan's archives.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from relocpy.build import default_source_date_epoch
from relocpy.deps import build_dependencies
from relocpy.fetch import fetch_all
from relocpy.plan import resolve_plan
from relocpy.recipes import load_recipes
from relocpy.runners import get_runner
from relocpy.settings import FetchSettings
from relocpy.steps import StepContext
from relocpy.toolchain import toolchain_env

pytestmark = pytest.mark.e2e
TARGET = "x86_64-unknown-linux-gnu"
DEPENDENCY = "zlib"


def build_zlib(cache: Path, mirror: Path) -> Path:
    """The prefix zlib was installed into, in a cache of its own."""
    plan = resolve_plan(load_recipes(), "3.13.15", TARGET, "noopt")
    plan = plan.model_copy(update={"dependencies": [s for s in plan.dependencies if s.dependency.name == DEPENDENCY]})
    fetched = fetch_all(plan.all_sources(), FetchSettings(cache_dir=cache, mirrors=[str(mirror)], offline=True, progress=False))
    runner = get_runner("native", plan.target)
    ctx = StepContext(
        cache_dir=cache, work_dir=cache / "work" / "repro", runner=runner,
        toolchain=toolchain_env(plan.target), jobs=2, source_date_epoch=default_source_date_epoch("20261124"),
    )
    [built] = build_dependencies(plan, {f.component: f for f in fetched}, ctx)
    return built.prefix


def digests(prefix: Path) -> dict[str, str]:
    return {str(p.relative_to(prefix)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(prefix.rglob("*")) if p.is_file() and not p.is_symlink()}


def test_a_dependency_built_in_two_directories_is_byte_identical(tmp_path, sources_mirror):
    first = build_zlib(tmp_path / "first-cache", sources_mirror)
    second = build_zlib(tmp_path / "another" / "cache", sources_mirror)
    assert first != second
    ours, theirs = digests(first), digests(second)
    assert "lib/libz.a" in ours
    assert ours == theirs
    for path in first.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert str(tmp_path).encode() not in data, f"{path} names the build directory"
