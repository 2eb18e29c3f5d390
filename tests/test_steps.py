"""The cached-step layer: keys, locks, markers, and the native runner's
environment (only what a step declares reaches its script, and all of it is
keyed)."""

from __future__ import annotations

import dataclasses
import shutil
import threading
import time
from pathlib import Path

import pytest

from relocpy.fetch import FetchedSource
from relocpy.plan import resolve_plan
from relocpy.recipes import load_recipes
from relocpy.runners import Mounts
from relocpy.runners.native import NativeRunner
from relocpy.steps import (
    COMPLETE_MARKER,
    KEY_RECORD,
    Dir,
    PythonCall,
    Script,
    Step,
    StepContext,
    StepDirs,
    run_step,
    step_key,
)

SCRIPTS = Path(__file__).parent / "scripts"
TARGET = "x86_64-unknown-linux-gnu"


def context(tmp_path: Path, runner=None, jobs: int = 2) -> StepContext:
    return StepContext(cache_dir=tmp_path / "cache", work_dir=tmp_path / "cache" / "work",
                       runner=runner or NativeRunner(), toolchain={}, jobs=jobs, source_date_epoch=1700000000)


def print_env_step(**env: str | Dir) -> Step:
    text = (SCRIPTS / "print-env.sh").read_text()
    return Step(kind="test", name="print-env", title="print the environment", inputs={"what": "env"},
                run=Script(text=text, env={"OUT": Dir.OUTPUT, **env}))


def logged_env(log: Path) -> dict[str, str]:
    lines = [line for line in log.read_text().splitlines() if "=" in line and not line.startswith(("#", "$"))]
    return dict(line.split("=", 1) for line in lines)


def counting_step(calls: list[str], name: str = "counted", action=None) -> Step:
    """A step of relocpy's own code that records each time it really runs."""
    def run(dirs: StepDirs) -> None:
        calls.append(name)
        (dirs.output / "made.txt").write_text("made\n")
        if action:
            action(dirs)

    return Step(kind="test", name=name, title=f"count {name}", inputs={}, run=PythonCall(run, code="v1"))


class RunnerWithMore(NativeRunner):
    """A native runner passing one more variable, or reporting another identity."""

    def __init__(self, extra: dict[str, str] | None = None, identity: str | None = None):
        super().__init__()
        self.extra, self._identity = extra or {}, identity

    def identity(self) -> str:
        return self._identity or super().identity()

    def environment(self) -> dict[str, str]:
        return {**super().environment(), **self.extra}


# --- the native runner's environment ---------------------------------------------


def test_native_runner_passes_only_what_it_is_given_and_its_path(tmp_path, monkeypatch):
    monkeypatch.setenv("CFLAGS", "-O0")
    monkeypatch.setenv("MAKEFLAGS", "-j64")
    log = tmp_path / "env.log"
    no_mounts = Mounts(read_only=[], writable=[])
    NativeRunner().run_script("print env", SCRIPTS / "print-env.sh", {"GREETING": "hello"}, no_mounts, log)
    env = logged_env(log)
    assert env["GREETING"] == "hello"
    assert env["PATH"] == NativeRunner().path
    assert "CFLAGS" not in env and "MAKEFLAGS" not in env and "PYTHONPATH" not in env


def test_a_host_variable_reaches_neither_the_script_nor_the_key(tmp_path, monkeypatch):
    step = print_env_step(GREETING="hello")
    ctx = context(tmp_path)
    clean_key = step_key(step, ctx)
    monkeypatch.setenv("CFLAGS", "-O0")
    result = run_step(step, ctx)
    assert result.key == clean_key
    env = logged_env(result.log)
    assert "CFLAGS" not in env
    work = ctx.work_dir / "print-env"
    assert env["GREETING"] == "hello" and env["OUT"] == str(result.output)
    assert env["HOME"] == str(work / "home") and env["TMPDIR"] == str(work / "tmp")
    assert env["LANG"] == "C.UTF-8" and env["SOURCE_DATE_EPOCH"] == "1700000000"


# --- what the key covers -----------------------------------------------------------


def test_the_key_covers_the_runners_environment_and_identity(tmp_path):
    step, ctx = print_env_step(), context(tmp_path)
    key = step_key(step, ctx)
    assert step_key(step, context(tmp_path, NativeRunner(path="/opt/tools/bin:/usr/bin:/bin"))) != key
    assert step_key(step, context(tmp_path, RunnerWithMore(extra={"LC_ALL": "C"}))) != key
    assert step_key(step, context(tmp_path, RunnerWithMore(identity="native:other-host"))) != key
    assert step_key(step, context(tmp_path, RunnerWithMore())) == key


def test_the_key_covers_the_steps_environment_and_script_but_not_jobs(tmp_path):
    step, ctx = print_env_step(GREETING="hello"), context(tmp_path)
    key = step_key(step, ctx)
    assert step_key(print_env_step(GREETING="bonjour"), ctx) != key
    assert step_key(print_env_step(GREETING="hello", MORE="1"), ctx) != key
    edited = Step(**{**step.__dict__, "run": Script(text=step.run.text + "true\n", env=step.run.env)})
    assert step_key(edited, ctx) != key
    assert step_key(step, context(tmp_path, jobs=64)) == key  # parallelism does not change the output


def test_step_keys_do_not_depend_on_where_the_checkout_cache_or_work_is(tmp_path, monkeypatch):
    """A copy of the project with another cache reuses the same entries."""
    pytest.importorskip("ziglang", reason="the target's toolchain is the `zig` extra")
    from relocpy.cpython import cpython_step
    from relocpy.deps import dependency_step
    from relocpy.paths import project_root
    from relocpy.toolchain import toolchain_env

    def keys(root: Path, cache: Path) -> list[str]:
        monkeypatch.setenv("RELOCPY_ROOT", str(root))
        plan = resolve_plan(load_recipes(), "3.13.15", TARGET, "noopt")
        [zlib] = [s for s in plan.dependencies if s.dependency.name == "zlib"]
        ctx = StepContext(cache_dir=cache, work_dir=cache / "work" / "plan", runner=NativeRunner(),
                          toolchain=toolchain_env(plan.target), jobs=2, source_date_epoch=0)
        source = zlib.dependency.sources[0]
        path = cache / "sources" / source.sha256 / source.file
        fetched = FetchedSource(component="zlib", source=source, path=path, location="cache")
        steps = [dependency_step(plan, zlib, fetched, []), cpython_step(plan, fetched, [], jobs=2)]
        return [step_key(step, ctx) for step in steps]

    copy = tmp_path / "elsewhere"
    for data in ("build", "recipes", "patches"):
        shutil.copytree(project_root() / data, copy / data)
    assert keys(project_root(), tmp_path / "cache") == keys(copy, tmp_path / "another cache")


def test_two_builds_work_dirs_share_a_steps_key_and_the_entry_says_which_one_made_it(tmp_path):
    """A cross build's build python is the native build's own CPython step:
    whichever build makes the entry, the other reuses it, and relocation must
    know the work directory its files name (StepResult.made_in)."""
    cache = tmp_path / "cache"
    first_build = StepContext(cache_dir=cache, work_dir=cache / "work" / "cross-plan", runner=NativeRunner(),
                              toolchain={}, jobs=2, source_date_epoch=0)
    second_build = dataclasses.replace(first_build, work_dir=cache / "work" / "native-plan")
    made = run_step(print_env_step(), first_build)
    reused = run_step(print_env_step(), second_build)
    assert reused.cached and reused.key == made.key
    assert made.made_in == reused.made_in == cache / "work" / "cross-plan" / "print-env"
    assert logged_env(reused.log)["WORK"] == str(made.made_in)  # what its files may name


# --- cache, lock and marker ----------------------------------------------------------


def test_a_second_run_is_a_cache_hit(tmp_path):
    calls: list[str] = []
    first = run_step(counting_step(calls), context(tmp_path))
    second = run_step(counting_step(calls), context(tmp_path))
    assert calls == ["counted"]
    assert not first.cached and second.cached
    assert (second.key, second.output, second.log) == (first.key, first.output, first.log)
    assert (second.output / "made.txt").read_text() == "made\n"
    entry = first.output.parent
    assert (entry / COMPLETE_MARKER).is_file() and (entry / KEY_RECORD).is_file()
    assert str(tmp_path) not in (entry / KEY_RECORD).read_text()


def test_two_concurrent_runs_of_one_step_do_the_work_once(tmp_path):
    calls: list[str] = []
    step = counting_step(calls, action=lambda dirs: time.sleep(0.5))
    start = threading.Barrier(2)
    results = []

    def build() -> None:
        start.wait()
        results.append(run_step(step, context(tmp_path)))

    threads = [threading.Thread(target=build) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == ["counted"]
    assert sorted(r.cached for r in results) == [False, True]


def test_an_interrupted_step_leaves_no_marker_and_its_output_is_not_used(tmp_path):
    def interrupted(dirs: StepDirs) -> None:
        (dirs.output / "partial.txt").write_text("half")
        raise KeyboardInterrupt

    calls: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        run_step(counting_step(calls, action=interrupted), context(tmp_path))
    entry = tmp_path / "cache" / "test" / f"counted-{step_key(counting_step(calls), context(tmp_path))[:16]}"
    assert not (entry / COMPLETE_MARKER).exists() and not (entry / "output" / "partial.txt").exists()
    again = run_step(counting_step(calls), context(tmp_path))
    assert calls == ["counted", "counted"] and not again.cached
    assert sorted(p.name for p in again.output.iterdir()) == ["made.txt"]


def test_an_entry_a_killed_build_left_is_made_again(tmp_path):
    """A kill skips every handler: the entry keeps its partial output, no marker."""
    calls: list[str] = []
    step, ctx = counting_step(calls), context(tmp_path)
    entry = ctx.cache_dir / "test" / f"counted-{step_key(step, ctx)[:16]}"
    (entry / "output").mkdir(parents=True)
    (entry / "output" / "partial.txt").write_text("half")
    result = run_step(step, ctx)
    assert calls == ["counted"] and not result.cached
    assert sorted(p.name for p in result.output.iterdir()) == ["made.txt"]
