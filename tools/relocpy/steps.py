"""Cached steps: how every build step is keyed, locked, run and recorded.

A step is a declaration: a name, its inputs, and how to run it. `run_step`
does the rest, the same way for every step:

- the key hashes everything that decides the output: the declared inputs
  (recipe data, source hashes), the keys of the steps it builds on, and how it
  runs: for a script, its rendered text, the runner's identity and the whole
  environment the runner passes (the toolchain's variables among it), with the
  machine's directories replaced by names so that the key does not depend on
  where the cache or the checkout is;
- an exclusive lock on the cache entry, so that two builds sharing a cache
  never do one step twice or write one entry at once;
- a fresh work directory with the outputs of the steps it builds on merged
  into one prefix (what a script sees as $DEPS);
- the log, and last a completion marker: an entry without one is an
  interrupted attempt, removed and done again, never used;
- the marker records a digest of the output tree, checked each time the
  entry is reused: an output changed since it was made (a cache restored
  half, a file edited or swapped) is discarded and made again, with a warning.
  The digest lives in the same cache, so it catches damage, not a forger who
  can write the cache: docs/ci.md says what a release build restores.

A cache entry is `<cache>/<kind>/<name>-<key[:16]>/`, holding `key.json`
(what was hashed: diff two of them to see why a step ran again), `output/`,
`build.log` and, last, `complete.json`.

Steps yet to come are declarations of the same kind. The host Python a cross
build runs during its build is a script step on a runner of the build
machine, and the CPython step is given its output:

    host_python = run_step(Step(
        kind="host-python", name=f"python-{version}-{build_triple}", title=f"build host Python {version}",
        inputs={"source_sha256": source.source.sha256},
        run=Script(render("host-python.sh.j2", ...), env={"SRC": str(source.path), "PREFIX": Dir.OUTPUT},
                   read_only=(source.path.parent,)),
    ), build_machine_ctx)
    cpython = run_step(Step(..., merged=deps, given={"BUILD_PYTHON_PREFIX": host_python}, ...), ctx)

Validation under emulation is a script step whose runner is the emulator
(its identity: qemu's version and the foreign root's digest), given the
packaged archives:

    run_step(Step(
        kind="emulated-validation", name=f"{artifact_name}-qemu", title=f"validate {artifact_name} under qemu",
        inputs={"archive_sha256": archive_sha256},
        given={"ARCHIVES": packaged},
        run=Script(render("validate-emulated.sh.j2", ...)),
    ), dataclasses.replace(ctx, runner=QemuUserRunner(target)))
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import time
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from relocpy.hashing import tree_sha256
from relocpy.paths import project_root
from relocpy.progress import info, step as announce, warn
from relocpy.runners import Mounts, Runner
from relocpy.toolchain import step_env, toolchain_places, zig_cache

COMPLETE_MARKER = "complete.json"
KEY_RECORD = "key.json"
LOG_NAME = "build.log"
# Part of every key: raise it when an entry's layout or a key's meaning changes.
# 3: complete.json records the output tree's digest (older entries have none to check).
STEP_FORMAT = 3
# Variables a script gets that do not change what it produces, so they are not
# keyed: a build with another --jobs reuses every step (Nix leaves its
# NIX_BUILD_CORES out of derivation hashes for the same reason).
UNKEYED_ENV = frozenset({"JOBS"})


class Dir(Enum):
    """A directory of the step being run, for a declaration's environment."""

    WORK = "work"
    OUTPUT = "output"
    DEPS = "deps"


@dataclass(frozen=True)
class StepDirs:
    work: Path  # scratch, kept after a failure for a look
    output: Path  # the product, inside the cache entry
    deps: Path  # the merged outputs of the steps it builds on
    log: Path

    def resolve(self, value: str | Dir) -> str:
        return value if isinstance(value, str) else str(getattr(self, value.value))


class StepResult(BaseModel):
    """What a step produced, whether it ran now or before."""

    model_config = ConfigDict(frozen=True)

    name: str
    key: str
    output: Path
    log: Path
    cached: bool  # True: reused from the cache, nothing ran now
    duration: float  # seconds the step's work took (when it ran, for a cached one)
    # The work directory it ran in (None: an entry older than the record). Its
    # output may name it, and it is another build's when that build made the
    # entry (a cross build's build python is the native build's own step).
    made_in: Path | None = None


@dataclass(frozen=True)
class StepContext:
    """What every step of one build shares besides its own inputs."""

    cache_dir: Path
    work_dir: Path
    runner: Runner
    toolchain: dict[str, str]
    jobs: int
    source_date_epoch: int
    toolchain_mounts: tuple[Path, ...] = ()  # read-only: where the compilers live (their identity is keyed)

    def script_env(self, dirs: StepDirs) -> dict[str, str]:
        """What every script gets, whatever the step: the toolchain, and a
        home, a temporary directory and a locale of its own (not the
        developer's: nothing in ~ or in the calling shell reaches a build)."""
        return {
            **self.toolchain,
            **step_env(self.toolchain, self.work_dir),
            "HOME": str(dirs.work / "home"),
            "TMPDIR": str(dirs.work / "tmp"),
            "LANG": "C.UTF-8",
            "JOBS": str(self.jobs),
            "SOURCE_DATE_EPOCH": str(self.source_date_epoch),
            "WORK": str(dirs.work),
            "DEPS": str(dirs.deps),
        }

    def mounts(self, read_only: list[Path], writable: list[Path]) -> Mounts:
        shared = zig_cache(self.toolchain, self.work_dir)
        return Mounts(read_only=[*read_only, *self.toolchain_mounts], writable=[*writable, *([shared] if shared else [])])


@dataclass(frozen=True)
class Script:
    """How a step runs a rendered template of build/ through the context's runner."""

    text: str
    env: Mapping[str, str | Dir] = field(default_factory=dict)  # the template's own variables
    read_only: tuple[Path, ...] = ()  # what it reads besides the toolchain and the given steps
    finish: Callable[[Path], None] | None = None  # tidies the output after the script (not keyed)

    def key_material(self, ctx: StepContext, dirs: StepDirs, given: Mapping[str, StepResult]) -> dict[str, Any]:
        env = {k: v for k, v in self.environment(ctx, dirs, given).items() if k not in UNKEYED_ENV}
        return {"script": _sha256(self.text), "runner": ctx.runner.identity(), "env": env}

    def environment(self, ctx: StepContext, dirs: StepDirs, given: Mapping[str, StepResult]) -> dict[str, str]:
        """Everything the script gets: nothing of the calling shell. (A container
        adds its image's own variables, which the runner's identity covers.)"""
        own = {name: dirs.resolve(value) for name, value in self.env.items()}
        inputs = {name: str(result.output) for name, result in given.items()}
        return {**ctx.runner.environment(), **ctx.script_env(dirs), **inputs, **own}

    def execute(self, ctx: StepContext, dirs: StepDirs, given: Mapping[str, StepResult], title: str) -> None:
        script = dirs.work / "build.sh"
        script.write_text(self.text)
        read_only = [*self.read_only, *(result.output for result in given.values())]
        mounts = ctx.mounts(read_only=read_only, writable=[dirs.work, dirs.output.parent])
        ctx.runner.run_script(title, script, self.environment(ctx, dirs, given), mounts, log=dirs.log)
        if self.finish:
            self.finish(dirs.output)


@dataclass(frozen=True)
class PythonCall:
    """How a step runs relocpy's own code (relocate, validate, package) on this host."""

    function: Callable[[StepDirs], None]
    code: str  # a digest of the code it runs: editing it makes a new key

    def key_material(self, ctx: StepContext, dirs: StepDirs, given: Mapping[str, StepResult]) -> dict[str, Any]:
        return {"code": self.code}

    def execute(self, ctx: StepContext, dirs: StepDirs, given: Mapping[str, StepResult], title: str) -> None:
        self.function(dirs)


@dataclass(frozen=True)
class Step:
    """A declaration: what the step is, what it is made from, how it runs."""

    kind: str  # the cache directory its entries live in: deps, cpython, artifacts...
    name: str  # names its entry and its work directory: zlib-1.3.1
    title: str  # what the console shows: build zlib 1.3.1
    inputs: Mapping[str, Any]  # recipe data and source hashes, as JSON
    run: Script | PythonCall
    merged: tuple[StepResult, ...] = ()  # outputs merged, in order, into one prefix: $DEPS
    given: Mapping[str, StepResult] = field(default_factory=dict)  # outputs passed as is, by variable


def run_step(step: Step, ctx: StepContext) -> StepResult:
    """The step's output from the cache, or made now (and then cached)."""
    material = key_material(step, ctx)
    key = _hash(material)
    entry = ctx.cache_dir / step.kind / f"{step.name}-{key[:16]}"
    with entry_lock(entry):
        recorded = _completed(entry, key)
        if recorded is not None and _output_intact(step, entry, recorded):
            info(f"    {step.title}: cached ({key[:12]})")
            made_in = Path(recorded.made_in) if recorded.made_in else None
            return _result(step, key, entry, cached=True, duration=recorded.duration, made_in=made_in)
        duration = _make(step, ctx, entry, key, material)
    return _result(step, key, entry, cached=False, duration=duration, made_in=_dirs(ctx, step, entry).work)


def step_key(step: Step, ctx: StepContext) -> str:
    return _hash(key_material(step, ctx))


def key_material(step: Step, ctx: StepContext) -> dict[str, Any]:
    """Everything the step's key hashes, with this machine's places named
    (the entry, whose name holds the key, stands as <entry>)."""
    dirs = _dirs(ctx, step, entry=Path("<entry>"))
    material = {
        "format": STEP_FORMAT,
        "kind": step.kind,
        "name": step.name,
        "inputs": step.inputs,
        "merged": [result.key for result in step.merged],
        "given": {name: result.key for name, result in step.given.items()},
        "run": step.run.key_material(ctx, dirs, step.given),
    }
    return _name_places(material, _places(ctx, dirs))


@contextmanager
def entry_lock(entry: Path):
    """Hold an exclusive lock on a cache entry while it is checked and made.
    (flock: released by the kernel when a killed build's descriptor closes.)"""
    entry.parent.mkdir(parents=True, exist_ok=True)
    with open(entry.parent / f".{entry.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def merge_prefixes(outputs: list[Path], into: Path) -> Path:
    """One prefix holding the files of the given ones, later ones winning."""
    into.mkdir(parents=True, exist_ok=True)
    for prefix in outputs:
        shutil.copytree(prefix, into, symlinks=True, dirs_exist_ok=True)
    return into


def _make(step: Step, ctx: StepContext, entry: Path, key: str, material: dict[str, Any]) -> float:
    """Run the step into a fresh entry; the marker comes last, so an exception
    (or a kill) at any point leaves an entry that is never used."""
    dirs = _dirs(ctx, step, entry)
    started = time.monotonic()
    with announce(step.title):
        _prepare(step, entry, dirs, material)
        try:
            step.run.execute(ctx, dirs, step.given, step.title)
        except BaseException:
            shutil.rmtree(entry, ignore_errors=True)  # the log stays in the work directory
            raise
        duration = time.monotonic() - started
        shutil.copyfile(dirs.log, entry / LOG_NAME)
        _write_marker(entry, Completion(name=step.name, key=key, duration=duration,
                                        output_sha256=tree_sha256(dirs.output), made_in=str(dirs.work)))
    return duration


def _prepare(step: Step, entry: Path, dirs: StepDirs, material: dict[str, Any]) -> None:
    shutil.rmtree(entry, ignore_errors=True)  # an earlier attempt died half-way
    shutil.rmtree(dirs.work, ignore_errors=True)
    for directory in (dirs.output, dirs.work / "home", dirs.work / "tmp"):
        directory.mkdir(parents=True)
    (entry / KEY_RECORD).write_text(json.dumps(material, indent=1, sort_keys=True) + "\n")
    merge_prefixes([result.output for result in step.merged], dirs.deps)
    dirs.log.write_text(f"# {step.title}: {step.kind}/{entry.name}\n")


def _dirs(ctx: StepContext, step: Step, entry: Path) -> StepDirs:
    work = ctx.work_dir / step.name
    return StepDirs(work=work, output=entry / "output", deps=work / "deps", log=work / LOG_NAME)


def _places(ctx: StepContext, dirs: StepDirs) -> dict[str, str]:
    """This machine's directories and the names keys know them by, longest
    first (the work directory may be inside the cache, the cache inside the
    checkout)."""
    places = {
        **toolchain_places(ctx.toolchain),
        str(project_root()): "<project>",
        str(ctx.cache_dir): "<cache>",
        str(ctx.work_dir): "<build-work>",  # holds zig's cache: a cross build's build python keys as its native build
        str(dirs.work): "<work>",
    }
    return {place: places[place] for place in sorted(places, key=len, reverse=True)}


def _name_places(value: Any, places: dict[str, str]) -> Any:
    if isinstance(value, str):
        for place, name in places.items():
            value = value.replace(place, name)
        return value
    if isinstance(value, Mapping):
        return {key: _name_places(item, places) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_name_places(item, places) for item in value]
    return value


class Completion(BaseModel):
    """complete.json: the step finished, and what its output was then."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    key: str
    duration: float  # seconds the work took
    output_sha256: str  # hashing.tree_sha256 of output/
    made_in: str | None = None  # the work directory it ran in (StepResult.made_in)


def _completed(entry: Path, key: str) -> Completion | None:
    """The entry's marker if it is whole and for this key; None: the entry
    was never finished (or its marker is not one), and is made again."""
    try:
        marker = Completion.model_validate_json((entry / COMPLETE_MARKER).read_bytes())
    except (OSError, ValidationError):
        return None
    return marker if marker.key == key else None


def _output_intact(step: Step, entry: Path, marker: Completion) -> bool:
    """Whether output/ is still the tree the step made (a real directory:
    a link could lead anywhere)."""
    output = entry / "output"
    if not output.is_symlink() and output.is_dir() and tree_sha256(output) == marker.output_sha256:
        return True
    warn(f"{step.kind}/{entry.name}: the cached output is not what the step made; discarded, making it again")
    return False


def _write_marker(entry: Path, marker: Completion) -> None:
    # Written aside and renamed: a marker is whole or absent.
    partial = entry / f".{COMPLETE_MARKER}.partial"
    partial.write_text(marker.model_dump_json())
    partial.replace(entry / COMPLETE_MARKER)


def _result(step: Step, key: str, entry: Path, cached: bool, duration: float, made_in: Path | None) -> StepResult:
    return StepResult(name=step.name, key=key, output=entry / "output", log=entry / LOG_NAME, cached=cached,
                      duration=duration, made_in=made_in)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _hash(material: dict[str, Any]) -> str:
    return _sha256(json.dumps(material, sort_keys=True))
