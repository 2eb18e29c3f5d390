"""The zig toolchain: environment, mounts, refused variants and the glibc floor check."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from relocpy import elf
from relocpy.ci import all_cells, load_settings
from relocpy.paths import ci_dir, project_root
from relocpy.errors import RelocpyError, UnknownNameError
from relocpy.plan import resolve_plan
from relocpy.recipes import get_target, load_recipes
from relocpy.runners.native import NativeRunner
from relocpy.steps import StepContext, StepDirs
from relocpy.toolchain import step_env, toolchain_env, toolchain_mounts, zig_target
from relocpy.validate import floor_problems

pytest.importorskip("ziglang", reason="the zig toolchain is relocpy[build]")


@pytest.fixture(scope="module")
def recipes():
    return load_recipes()


def zig(target):
    return target.model_copy(update={"toolchain": "zig"})


def test_zig_env_points_at_the_wrappers_and_the_floor(recipes):
    target = zig(get_target(recipes, "x86_64-unknown-linux-gnu"))
    env = toolchain_env(target)
    assert env["RELOCPY_ZIG_TARGET"] == "x86_64-linux-gnu.2.17"
    for var in ("CC", "CXX", "AR", "RANLIB"):
        assert Path(env[var]).is_file() and Path(env[var]).name.startswith("zig-")
    assert Path(env["RELOCPY_ZIG"]).is_file()
    assert len(env["RELOCPY_ZIG_WRAPPERS"]) == 16  # wrapper edits change every cache key
    assert "-Wno-error=date-time" in env["CFLAGS"].split()
    assert Path(env["RELOCPY_ZIG"]).parent in toolchain_mounts(target)
    assert Path(env["CC"]).parent in toolchain_mounts(target)


def test_gcc_env_is_unchanged(recipes):
    target = get_target(recipes, "x86_64-unknown-linux-gnu").model_copy(update={"toolchain": "gcc"})
    env = toolchain_env(target)
    assert env["CC"] == "gcc" and "RELOCPY_ZIG" not in env and "date-time" not in env["CFLAGS"]
    assert toolchain_mounts(target) == [] and step_env(env, Path("/w")) == {}


def test_zig_target_names_musl_and_refuses_other_systems(recipes):
    assert zig_target(get_target(recipes, "x86_64-unknown-linux-musl")) == "x86_64-linux-musl"
    with pytest.raises(RelocpyError, match="Linux targets only"):
        zig_target(zig(get_target(recipes, "x86_64-apple-darwin")))


def test_a_builds_steps_share_one_zig_cache_in_its_work_dir_and_toolchain_dirs_are_mounted(recipes, tmp_path):
    target = zig(get_target(recipes, "x86_64-unknown-linux-gnu"))
    build_work = tmp_path / "work" / "plan"
    ctx = StepContext(cache_dir=tmp_path, work_dir=build_work, runner=NativeRunner(),
                      toolchain=toolchain_env(target), jobs=1, source_date_epoch=0,
                      toolchain_mounts=tuple(toolchain_mounts(target)))
    for name in ("zlib", "cpython"):
        step = build_work / name
        env = ctx.script_env(StepDirs(work=step, output=tmp_path / "out", deps=step / "deps", log=step / "build.log"))
        assert env["ZIG_GLOBAL_CACHE_DIR"] == env["ZIG_LOCAL_CACHE_DIR"] == str(build_work / "zig-cache")
    mounts = ctx.mounts(read_only=[tmp_path / "src"], writable=[build_work / "zlib"])
    assert mounts.read_only == [tmp_path / "src", *toolchain_mounts(target)]
    assert mounts.writable == [build_work / "zlib", build_work / "zig-cache"]


def test_every_build_script_warms_zigs_cache_up_before_it_compiles(recipes):
    """The first use of the shared cache must be the warm-up (run from the
    cache's parent), whichever step comes first: the preamble every script
    begins with ends with it."""
    build = project_root() / "build"
    assert (build / "common.sh.j2").read_text().rstrip().endswith('{% include "zig-warm-up.sh.j2" %}')
    assert (build / "deps" / "_prelude.sh.j2").read_text().startswith('{% include "common.sh.j2" %}\n')
    assert (build / "cpython.sh.j2").read_text().startswith('{% include "common.sh.j2" %}\n')
    for dep in recipes.dependencies.values():
        text = (build / "deps" / f"{dep.template}.sh.j2").read_text()
        assert text.startswith('{% include "deps/_prelude.sh.j2" %}\n'), dep.template


def summary(**by_file: str) -> elf.ElfSummary:
    return elf.ElfSummary(files=len(by_file), libc_max=max(by_file.values(), key=lambda v: tuple(map(int, v.split(".")))),
                          problems=[], libc_by_file=by_file)


def test_floor_is_a_failure_only_when_enforced(recipes):
    above = summary(**{"bin/python3.13": "2.17", "lib/x.so": "2.34"})
    floor_2_17 = recipes.policies["manylinux_2_17_x86_64"]
    [problem] = floor_problems(above, floor_2_17, enforce=True)
    assert "GLIBC_2.34" in problem and "lib/x.so" in problem
    assert floor_problems(above, floor_2_17, enforce=False) == []
    assert floor_problems(summary(a="2.17", b="2.14"), floor_2_17, enforce=True) == []


def test_zig_cc_links_against_the_floor(recipes, tmp_path):
    env = toolchain_env(zig(get_target(recipes, "x86_64-unknown-linux-gnu")))
    (tmp_path / "t.c").write_text("#include <time.h>\nint main(void){struct timespec t; return clock_gettime(0, &t);}\n")
    run_env = {"PATH": "/usr/bin:/bin", **env, **step_env(env, tmp_path)}
    subprocess.run([env["CC"], "-O2", "t.c", "-o", "t"], cwd=tmp_path, env=run_env, check=True)
    _, glibc = elf.check_file(tmp_path / "t", recipes.policies["manylinux_2_17_x86_64"], [])
    assert glibc == "2.17"  # clock_gettime@GLIBC_2.17; gcc on this host gives 2.34


def test_relocation_names_the_users_compiler_not_the_wrappers():
    from relocpy.relocate import generic_programs
    from relocpy.toolchain import wrappers_dir

    cc = str(wrappers_dir() / "zig-cc")
    assert generic_programs(f"{cc} -shared -O2") == "cc -shared -O2"
    assert generic_programs(f"['{wrappers_dir() / 'zig-c++'}', '-x']") == "['c++', '-x']"
    assert generic_programs("gcc -pthread") == "gcc -pthread"
