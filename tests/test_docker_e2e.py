"""The Docker runner against a real engine and real debootstrapped base images.

The session fixture starts an engine with .ci/start-docker when none answers,
so these tests run (never skip) wherever root and a Debian mirror are at hand.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from relocpy.deps import build_dependencies
from relocpy.errors import EngineError, StepFailed
from relocpy.fetch import fetch_all
from relocpy.images import BootstrapRequest, bootstrap_base
from relocpy.paths import project_root, templates_dir
from relocpy.plan import resolve_plan
from relocpy.recipes import get_target, load_recipes
from relocpy.runners import Mounts
from relocpy.runners.docker import CONTAINER_PREFIX, DockerRunner, builder_tag, render_dockerfile
from relocpy.settings import FetchSettings
from relocpy.steps import StepContext
from relocpy.toolchain import toolchain_env, toolchain_mounts
from support import SUITES

pytestmark = pytest.mark.docker

SCRIPTS = Path(__file__).parent / "scripts"
ZLIB_TARBALL = "zlib_1.3.dfsg+really1.3.1.orig.tar.gz"


@pytest.fixture(scope="session", params=sorted(SUITES))
def runner(request, engine, base_images) -> DockerRunner:
    target = get_target(load_recipes(), "x86_64-unknown-linux-gnu")
    target = target.model_copy(update={"image": base_images[request.param]})
    return DockerRunner(target, engine)


@pytest.fixture
def step_dirs(tmp_path) -> tuple[Path, Path, Path]:
    """(read-only input dir holding the script, writable output dir, log path)."""
    inputs, outputs = tmp_path / "in put", tmp_path / "out"
    inputs.mkdir()
    (inputs / "source.txt").write_text("from the host\n")
    return inputs, outputs, tmp_path / "logs" / "step.log"


def suite_of(runner: DockerRunner) -> str:
    return runner.target.image.removeprefix("relocpy-")


def write_script(inputs: Path, name: str) -> Path:
    """Copy a step script from tests/scripts/ into the read-only input dir."""
    script = inputs / name
    shutil.copyfile(SCRIPTS / name, script)
    return script


def test_base_images_are_the_asked_suites(engine, base_images, tmp_path):
    for suite, tag in base_images.items():
        version = subprocess.run(
            ["docker", "run", "--rm", "--network", "none", tag, "cat", "/etc/debian_version"],
            capture_output=True, text=True, check=True,
        ).stdout
        assert version.startswith(SUITES[suite]), (suite, version)
    # Existing tags are kept, not rebuilt.
    kept = bootstrap_base(BootstrapRequest(suite="bullseye", tag="relocpy-bullseye"), tmp_path / "log", engine)
    assert kept is False


def test_script_runs_with_mounts_env_and_log(runner, step_dirs):
    inputs, outputs, log = step_dirs
    script = write_script(inputs, "mounts-env-log.sh")
    runner.run_script("trivial", script, {"GREETING": "hello there", "INPUTS": str(inputs)},
                      Mounts(read_only=[inputs], writable=[outputs]), log)
    text = log.read_text()
    assert f"suite: {SUITES[suite_of(runner)]} cwd: {outputs} greeting: hello there" in text
    assert "from the host" in text
    assert "gcc (Debian" in text
    assert "input mount is read-only" in text
    assert (outputs / "result.txt").read_text() == "built\n"
    assert not (inputs / "forbidden").exists()


def test_no_network_fails_fast(runner, step_dirs):
    inputs, outputs, log = step_dirs
    script = write_script(inputs, "no-network.sh")
    assert _has_interface(runner, script), "the probe must see a host network when there is one"
    started = time.monotonic()
    with pytest.raises(StepFailed) as info:
        runner.run_script("offline", script, {}, Mounts(read_only=[inputs], writable=[outputs]), log)
    assert time.monotonic() - started < 15
    assert "Network is unreachable" in str(info.value)


def _has_interface(runner: DockerRunner, script: Path) -> bool:
    image = runner.ensure_image(script.with_name("image.log"))
    argv = ["docker", "run", "--rm", "--network", "host", "-v", f"{script}:/probe.sh:ro", image, "bash", "/probe.sh"]
    return "has an interface" in subprocess.run(argv, capture_output=True, text=True).stdout


def test_failing_script_raises_with_log_tail(runner, step_dirs, engine):
    inputs, outputs, log = step_dirs
    script = write_script(inputs, "fails.sh")
    with pytest.raises(StepFailed) as info:
        runner.run_script("doomed step", script, {}, Mounts(read_only=[inputs], writable=[outputs]), log)
    message = str(info.value)
    assert message.startswith("doomed step failed (exit 3)")
    assert "last words before failing" in message
    assert engine.container_names(CONTAINER_PREFIX + "doomed-step") == []


def test_interrupted_step_leaves_no_container(runner, step_dirs, engine):
    inputs, outputs, log = step_dirs
    script = write_script(inputs, "ignores-sigterm.sh")

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.alarm(5)
    started = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            runner.run_script("interrupted", script, {}, Mounts(read_only=[inputs], writable=[outputs]), log)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert time.monotonic() - started < 60
    assert "started" in log.read_text()
    assert engine.container_names(CONTAINER_PREFIX + "interrupted") == []


def test_builder_image_is_reused(runner, tmp_path, engine):
    first = runner.ensure_image(tmp_path / "first.log")
    image_id = engine.image_id(first)
    second = runner.ensure_image(tmp_path / "second.log")
    assert second == first
    assert engine.image_id(second) == image_id
    assert not (tmp_path / "second.log").exists()  # nothing was built


def test_identity_is_the_base_images_packages_not_its_id(engine, base_images, tmp_path):
    """A base image made again with the same packages (a fresh CI runner) keeps every step key."""
    target = get_target(load_recipes(), "x86_64-unknown-linux-gnu")
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(f"FROM {base_images['bookworm']}\nLABEL org.relocpy.test=another-id\n")
    engine.build("relocpy-test-same-packages:1", context, {}, tmp_path / "build.log")
    assert engine.image_id("relocpy-test-same-packages:1") != engine.image_id(base_images["bookworm"])
    bookworm = DockerRunner(target.model_copy(update={"image": base_images["bookworm"]}), engine)
    copy = DockerRunner(target.model_copy(update={"image": "relocpy-test-same-packages:1"}), engine)
    bullseye = DockerRunner(target.model_copy(update={"image": base_images["bullseye"]}), engine)
    assert "@packages:" in bookworm.identity()
    assert copy.identity().split("@")[1] == bookworm.identity().split("@")[1]
    assert bullseye.identity().split("@")[1] != bookworm.identity().split("@")[1]


def test_missing_input_is_one_line_error(runner, step_dirs):
    inputs, outputs, log = step_dirs
    script = write_script(inputs, "true.sh")
    with pytest.raises(EngineError, match="does not exist"):
        runner.run_script("x", script, {}, Mounts(read_only=[inputs / "nope"], writable=[outputs]), log)


def test_missing_base_image_is_one_line_error(engine):
    target = get_target(load_recipes(), "x86_64-unknown-linux-gnu")
    runner = DockerRunner(target.model_copy(update={"image": "relocpy-no-such-suite"}), engine)
    with pytest.raises(EngineError, match="relocpy image bootstrap --suite no-such-suite"):
        runner.ensure_image(Path("/nonexistent/log"))


def test_no_step_container_left_behind(engine, runner):
    # Runs last in this module: every step above used --rm or was cleaned up.
    assert engine.container_names(CONTAINER_PREFIX) == []


def test_image_build_failure_leaves_no_container(engine, base_images, tmp_path):
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(f"FROM {base_images['bullseye']}\nRUN echo doomed-build && false\n")
    before = engine.container_names("")
    with pytest.raises(StepFailed, match="doomed-build"):
        engine.build("relocpy-test-doomed:1", context, {}, tmp_path / "build.log")
    assert engine.container_names("") == before


def test_zig_links_against_glibc_2_17_in_a_bullseye_builder(engine, base_images, tmp_path):
    ziglang = pytest.importorskip("ziglang", reason="the zig toolchain is relocpy[build]")
    source = project_root().parent / "shared" / "sources" / ZLIB_TARBALL
    target = get_target(load_recipes(), "x86_64-unknown-linux-gnu")
    runner = DockerRunner(target.model_copy(update={"image": base_images["bullseye"]}), engine)
    inputs, work = tmp_path / "in", tmp_path / "work"
    inputs.mkdir()
    script = write_script(inputs, "zig-zlib.sh")
    zig_dir = Path(ziglang.__file__).parent
    env = {
        "SOURCE": str(source),
        "TOOLCHAIN": str(templates_dir() / "toolchain"),
        "RELOCPY_ZIG": str(zig_dir / "zig"),
        "RELOCPY_ZIG_TARGET": "x86_64-linux-gnu.2.17",
        "ZIG_GLOBAL_CACHE_DIR": str(work / "zig-cache"),
    }
    mounts = Mounts(read_only=[inputs, source, templates_dir() / "toolchain", zig_dir], writable=[work])
    runner.run_script("zig zlib", script, env, mounts, tmp_path / "zig.log")
    text = (tmp_path / "zig.log").read_text()
    assert "*** zlib test OK ***" in text or "inflate with dictionary: hello, hello!" in text
    assert "host glibc: ldd (Debian GLIBC 2.31" in text
    assert "max glibc: GLIBC_2.14" in text  # memcpy@GLIBC_2.14; nothing newer than the 2.17 floor


@pytest.mark.e2e
def test_dependency_pipeline_builds_zlib_in_the_builder(engine, base_images, sources_mirror, tmp_path):
    plan = resolve_plan(load_recipes(), "3.13.15", "x86_64-unknown-linux-gnu", "noopt")
    zlib = [s for s in plan.dependencies if s.dependency.name == "zlib"]
    plan = plan.model_copy(update={"dependencies": zlib, "target": plan.target.model_copy(update={"image": base_images["bullseye"]})})
    settings = FetchSettings.resolve(cache_dir=str(tmp_path / "cache"), mirrors=[str(sources_mirror)], offline=True)
    fetched = {f.component: f for f in fetch_all([("zlib", zlib[0].dependency.sources)], settings)}
    runner = DockerRunner(plan.target, engine)
    ctx = StepContext(cache_dir=tmp_path / "cache", work_dir=tmp_path / "work", runner=runner,
                      toolchain=toolchain_env(plan.target), jobs=2,
                      source_date_epoch=1700000000, toolchain_mounts=tuple(toolchain_mounts(plan.target)))
    [built] = build_dependencies(plan, fetched, ctx)
    assert (built.prefix / "lib" / "libz.a").is_file()
    log = built.step.log.read_text()
    command = next(line for line in log.splitlines() if line.startswith("$ "))
    assert command.startswith("$ docker run ") and "--network none" in command
    assert builder_tag(render_dockerfile(plan.target)) in command  # ran in the bullseye builder
    assert "@packages:" in runner.identity()  # keyed by its base's packages
    assert runner.identity() in (built.step.output.parent / "key.json").read_text()
    assert engine.container_names(CONTAINER_PREFIX) == []
