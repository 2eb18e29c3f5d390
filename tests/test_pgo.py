"""PGO with zig, proven on a small program through the same wrappers, tools
and merge the CPython training step uses: instrument, run, merge, use; a
stale or missing profile fails the build. (A whole PGO interpreter is built by
the release matrix and measured by tools/bench_interp.py, not here.)"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from relocpy import pgo
from relocpy.cpython import cpython_step, training_step
from relocpy.fetch import FetchedSource
from relocpy.plan import resolve_plan
from relocpy.recipes import get_target, load_recipes
from relocpy.steps import StepContext, StepResult, step_key
from relocpy.runners.native import NativeRunner
from relocpy.toolchain import step_env, toolchain_env

PROGRAM = """#include <stdio.h>
static int pick(int x) { return x % 3 ? x * 2 : x + 1; }
int main(void) { long s = 0; for (int i = 0; i < 100000; i++) s += pick(i); printf("%ld\\n", s); return 0; }
"""
# The same program with another control flow in pick(): its profile no longer matches.
CHANGED = PROGRAM.replace("{ return x % 3", "{ if (x > 5) return 1; return x % 3")


@pytest.fixture(scope="module")
def recipes():
    return load_recipes()


@pytest.fixture(scope="module")
def target(recipes):
    return get_target(recipes, "x86_64-unknown-linux-gnu")


@pytest.fixture(scope="module")
def tools(target):
    return pgo.find_pgo_tools(target)  # the host must have them: install-host-deps installs them


def compile_(target, tmp_path: Path, *args: str, runtime: Path | None = None) -> subprocess.CompletedProcess:
    env = toolchain_env(target)
    run_env = {"PATH": "/usr/bin:/bin", **env, **step_env(env, tmp_path)}
    if runtime:
        run_env["RELOCPY_PROFILE_RUNTIME"] = str(runtime)
    return subprocess.run([env["CC"], "-O2", *args], cwd=tmp_path, env=run_env, capture_output=True, text=True)


def test_a_profile_is_written_merged_and_used_and_a_stale_one_fails(target, tools, tmp_path):
    (tmp_path / "t.c").write_text(PROGRAM)
    built = compile_(target, tmp_path, "-fprofile-instr-generate", "t.c", "-o", "t-gen", runtime=tools.runtime)
    assert built.returncode == 0, built.stderr
    out = tmp_path / "out"
    out.mkdir()
    run = subprocess.run(["./t-gen"], cwd=tmp_path, env={"LLVM_PROFILE_FILE": f"{out}/t-%p-%m.profraw"},
                         capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "8333250001"
    pgo.merge_profiles(tools, out)
    profile = out / pgo.MERGED_PROFILE
    assert profile.stat().st_size > 0 and not list(out.glob("*.profraw"))
    use = ["-fprofile-instr-use=" + str(profile), "-Werror=profile-instr-out-of-date", "-c", "t.c", "-o", "t.o"]
    assert compile_(target, tmp_path, *use).returncode == 0
    (tmp_path / "t.c").write_text(CHANGED)
    stale = compile_(target, tmp_path, *use)
    assert stale.returncode != 0 and "profile data may be out of date" in stale.stderr
    missing = compile_(target, tmp_path, "-fprofile-instr-use=" + str(tmp_path / "none.profdata"), "-c", "t.c")
    assert missing.returncode != 0 and "none.profdata" in missing.stderr


def test_an_instrumented_link_without_the_runtime_is_refused(target, tmp_path):
    # zig alone links no profile runtime: the program would write nothing, silently.
    (tmp_path / "t.c").write_text(PROGRAM)
    built = compile_(target, tmp_path, "-fprofile-instr-generate", "t.c", "-o", "t-gen")
    assert built.returncode != 0 and "RELOCPY_PROFILE_RUNTIME" in built.stderr


def test_a_training_that_wrote_no_profile_fails(tools, tmp_path):
    with pytest.raises(pgo.PgoToolsError, match="wrote no profile"):
        pgo.merge_profiles(tools, tmp_path)


def fake_llvm(root: Path, version: str) -> Path:
    profdata = root / "bin" / "llvm-profdata"
    profdata.parent.mkdir(parents=True)
    profdata.write_text(f"#!/bin/sh\necho 'Debian LLVM version {version}'\n")
    profdata.chmod(0o755)
    return profdata


def test_tools_of_another_llvm_are_refused_naming_both_versions(target, tools, tmp_path, monkeypatch):
    fake_llvm(tmp_path, "21.1.0")
    monkeypatch.setattr(pgo, "LLVM_ROOT", tmp_path)
    runtime = pgo.profile_runtime(target)
    runtime.parent.mkdir(parents=True)
    runtime.write_bytes(b"!<arch>\n")
    with pytest.raises(pgo.PgoToolsError) as err:
        pgo.find_pgo_tools(target)
    line = str(err.value)
    assert "LLVM 21.1.0" in line and f"clang is {tools.llvm_version}" in line and "\n" not in line


@pytest.mark.parametrize("missing", ["llvm-profdata", "runtime"])
def test_a_missing_tool_says_what_to_install(target, tmp_path, monkeypatch, missing):
    monkeypatch.setattr(pgo, "LLVM_ROOT", tmp_path)
    if missing == "runtime":
        fake_llvm(tmp_path, "22.1.8")
    with pytest.raises(pgo.PgoToolsError, match="apt-get install " + (
            pgo.PROFDATA_PACKAGE if missing == "llvm-profdata" else pgo.RUNTIME_PACKAGE)):
        pgo.find_pgo_tools(target)


def test_the_profile_and_its_tools_key_the_steps(recipes, tools, tmp_path):
    plan = resolve_plan(recipes, "3.13.15", "x86_64-unknown-linux-gnu", "pgo+lto")
    assert pgo.trains_in_own_step(plan)
    assert not pgo.trains_in_own_step(resolve_plan(recipes, "3.13.15", "x86_64-unknown-linux-gnu", "lto"))
    source = FetchedSource(component="cpython", source=plan.python.sources[0], path=tmp_path / "src.tar.xz", location="cache")
    ctx = StepContext(cache_dir=tmp_path, work_dir=tmp_path, runner=NativeRunner(), toolchain=toolchain_env(plan.target),
                      jobs=2, source_date_epoch=0)
    other_runtime = tools.__class__(**{**tools.__dict__, "runtime_sha256": "0" * 64})
    assert step_key(training_step(plan, source, [], 2, tools), ctx) != step_key(
        training_step(plan, source, [], 2, other_runtime), ctx)
    # The optimised build is given the profile: another profile, another key.
    profiles = [StepResult(name="p", key=key * 64, output=tmp_path, log=tmp_path / "log", cached=True, duration=0)
                for key in "ab"]
    keys = {step_key(cpython_step(plan, source, [], 2, profile), ctx) for profile in profiles}
    assert len(keys) == 2 and step_key(cpython_step(plan, source, [], 2), ctx) not in keys


def test_an_instrumented_link_of_shared_libraries_only_links_the_runtime(target, tools, tmp_path):
    # CPython's libpython3.so: its only input is another shared library, for
    # which the wrappers add an empty C input; the runtime after it stays an archive.
    (tmp_path / "s.c").write_text("int g(int x) { return x % 5 ? x * 3 : x - 1; }\n")
    first = compile_(target, tmp_path, "-shared", "-fPIC", "-fprofile-instr-generate", "s.c", "-o", "libs.so",
                     runtime=tools.runtime)
    assert first.returncode == 0, first.stderr
    only = compile_(target, tmp_path, "-shared", "-fprofile-instr-generate", "libs.so", "-o", "libonly.so",
                    runtime=tools.runtime)
    assert only.returncode == 0, only.stderr


# The objects that share the interpreter's external names (build/cpython.sh.j2).
PROGRAMS = ("Programs/_testembed.o", "Programs/_freeze_module.o", "Programs/_bootstrap_python.o",
            "Modules/getpath_noop.o")
# CPython's shape: the programs include a header generated by a program linked
# from libpython's objects (here Python/ceval.o).
MINI_MAKEFILE = """\
CPPFLAGS = -I.
.c.o:
\t@echo "$@: $(CFLAGS_NODIST) $(CPPFLAGS)"
Python/frozen.h: Python/ceval.o
\t@true
Programs/_testembed.o Programs/_freeze_module.o Programs/_bootstrap_python.o: Python/frozen.h
all: """ + " ".join(PROGRAMS) + " Python/ceval.o\n"  # ceval.o last: first reached as a prerequisite


def test_the_profile_reaches_libpython_and_not_the_programs_that_share_its_names(recipes, tmp_path):
    # The optimised build appends rules to CPython's Makefile; with them, make
    # compiles the programs without the profile and libpython's objects (their
    # prerequisites) with it.
    plan = resolve_plan(recipes, "3.11.2", "x86_64-unknown-linux-gnu", "pgo+lto")
    source = FetchedSource(component="cpython", source=plan.python.sources[0], path=tmp_path / "src.tgz", location="cache")
    profile = StepResult(name="p", key="a" * 64, output=tmp_path, log=tmp_path / "log", cached=True, duration=0)
    script = cpython_step(plan, source, [], 2, profile).run.text
    appended = script.split("<<'MAKEFILE'\n", 1)[1].split("\nMAKEFILE\n", 1)[0]
    for obj in ("Python/ceval.o", *PROGRAMS):
        (tmp_path / obj).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / obj).with_suffix(".c").write_text("")
    (tmp_path / "Makefile").write_text(MINI_MAKEFILE + appended + "\n")
    made = subprocess.run(["make", "-j2", "all", "CFLAGS_NODIST=-fprofile-instr-use=code.profclangd"],
                          cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    flags = dict(line.split(": ", 1) for line in made.splitlines())
    assert "-fno-profile-instr-use" not in flags["Python/ceval.o"]
    for program in PROGRAMS:
        assert flags[program].endswith("-fno-profile-instr-use"), flags[program]
