"""Dependencies build side by side: two at a time, each once what it depends
on is built, and a failure lets the running ones finish (their cache entries
are kept) before it is raised. The steps are shell scripts that record when
they start and end (deps.dependency_step stood in for), run by the native
runner."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest

from relocpy import deps
from relocpy.errors import StepFailed
from relocpy.fetch import FetchedSource
from relocpy.models import SourceFile
from relocpy.plan import resolve_plan
from relocpy.recipes import load_recipes
from relocpy.runners.native import NativeRunner
from relocpy.steps import Dir, Script, Step, StepContext

PLAN = resolve_plan(load_recipes(), "3.13.15", "x86_64-unknown-linux-gnu", "noopt")


def timed_steps(monkeypatch, events: Path, failing: str | None = None, seconds: float = 0.4) -> None:
    def step(plan, dep_step, source, inputs) -> Step:
        name = dep_step.dependency.name
        # the failing one fails at once: the one beside it is still running then
        fail = "exit 3" if name == failing else ""
        text = (f'echo "start {name} $(date +%s.%N)" >> {events}\n{fail}\nsleep {seconds}\n'
                f'echo "end {name} $(date +%s.%N)" >> {events}\ntouch "$OUT/{name}"\n')
        return Step(kind="deps", name=name, title=f"build {name}", inputs={"after": [d.key for d in inputs]},
                    merged=tuple(d.step for d in inputs), run=Script(text=text, env={"OUT": Dir.OUTPUT}))

    monkeypatch.setattr(deps, "dependency_step", step)


def run(tmp_path: Path) -> list[deps.BuiltDependency]:
    ctx = StepContext(cache_dir=tmp_path / "cache", work_dir=tmp_path / "cache" / "work", runner=NativeRunner(),
                      toolchain={}, jobs=1, source_date_epoch=0)
    source = tmp_path / "src.tar"
    source.write_bytes(b"")
    sources = {d.dependency.name: FetchedSource(component=d.dependency.name, path=source, location="cache",
                                                source=SourceFile(file=source.name, sha256="0" * 64))
               for d in PLAN.dependencies}
    return deps.build_dependencies(PLAN, sources, ctx)


def spans(events: Path) -> dict[str, tuple[float, float]]:
    times: dict[str, dict[str, float]] = {}
    for line in events.read_text().splitlines():
        what, name, at = line.split()
        times.setdefault(name, {})[what] = float(at)
    return {name: (t["start"], t.get("end", float("inf"))) for name, t in times.items()}


def most_at_once(found: dict[str, tuple[float, float]]) -> int:
    return max(sum(1 for start, end in found.values() if start <= moment < end) for moment, _ in found.values())


def test_two_dependencies_build_at_once_and_a_dependent_waits_for_what_it_needs(monkeypatch, tmp_path):
    events = tmp_path / "events"
    timed_steps(monkeypatch, events)
    started = time.monotonic()
    built = run(tmp_path)
    elapsed = time.monotonic() - started
    assert [b.name for b in built] == [d.dependency.name for d in PLAN.dependencies]  # the plan's order
    assert all((b.prefix / b.name).is_file() for b in built)
    found = spans(events)
    assert most_at_once(found) == deps.DEPENDENCY_WORKERS, found
    for dep_step in PLAN.dependencies:
        for needed in dep_step.depends:
            assert found[dep_step.dependency.name][0] >= found[needed][1], (dep_step.dependency.name, needed)
    assert elapsed < 0.4 * len(PLAN.dependencies), "no faster than one at a time"


def test_a_failure_lets_the_running_one_finish_and_starts_nothing_more(monkeypatch, tmp_path):
    events = tmp_path / "events"
    first, second = (d.dependency.name for d in PLAN.dependencies[:2])
    timed_steps(monkeypatch, events, failing=first, seconds=3)
    with pytest.raises(StepFailed, match=f"build {first} failed"):
        run(tmp_path)
    found = spans(events)
    assert sorted(found) == sorted([first, second]), "a step started after the failure"
    assert found[second][1] != float("inf"), "the step running beside the failed one was cut short"
    assert list((tmp_path / "cache" / "deps").glob(f"{second}-*/complete.json")), "its cache entry was not kept"


def test_an_interrupted_build_stops_the_steps_running_beside_it(monkeypatch, tmp_path):
    """Ctrl-C reaches the main thread only (the steps run in sessions of their
    own): the steps running in the workers are stopped too."""
    events = tmp_path / "events"
    timed_steps(monkeypatch, events, seconds=60)
    # Python's own Ctrl-C handler, whatever this process inherited: a shell
    # starts background commands with SIGINT ignored, and Python keeps that.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    threading.Timer(3, signal.pthread_kill, (threading.main_thread().ident, signal.SIGINT)).start()
    started = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            run(tmp_path)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert time.monotonic() - started < 30
    found = spans(events)
    assert len(found) == deps.DEPENDENCY_WORKERS and all(end == float("inf") for _, end in found.values()), found
    assert not list((tmp_path / "cache" / "deps").glob("*/complete.json"))
