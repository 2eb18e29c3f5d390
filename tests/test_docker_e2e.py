"""The Docker runner against a real engine and real debootstrapped base images.

The session fixture starts an engine with .ci/start-docker when none answers,
so these tests run (never skip) wherever root and a Debian mirror are at hand.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from relocpy.engine import DockerEngine
from relocpy.errors import EngineError, StepFailed
from relocpy.images import BootstrapRequest, bootstrap_base, default_tag
from relocpy.paths import project_root
from relocpy.recipes import get_target, load_recipes
from relocpy.runners import Mounts
from relocpy.runners.docker import CONTAINER_PREFIX, DockerRunner

pytestmark = pytest.mark.docker

SUITES = {"bullseye": "11", "bookworm": "12"}


@pytest.fixture(scope="session")
def engine() -> DockerEngine:
    engine = DockerEngine()
    try:
        engine.ensure_engine()
    except EngineError:
        subprocess.run([str(project_root() / ".ci" / "start-docker")], check=True)
        engine.ensure_engine()
    return engine


@pytest.fixture(scope="session")
def base_images(engine, tmp_path_factory) -> dict[str, str]:
    logs = tmp_path_factory.mktemp("bootstrap")
    for suite in SUITES:
        bootstrap_base(BootstrapRequest(suite=suite, tag=default_tag(suite)), logs / f"{suite}.log", engine)
    return {suite: default_tag(suite) for suite in SUITES}


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


def write_script(inputs: Path, body: str) -> Path:
    script = inputs / "step.sh"
    script.write_text(body)
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
    script = write_script(inputs, """
        echo "suite: $(cut -d. -f1 /etc/debian_version) cwd: $PWD greeting: $GREETING"
        cat "$INPUTS/source.txt"
        gcc --version | head -n 1
        echo built > "$PWD/result.txt"
        if touch "$INPUTS/forbidden" 2>/dev/null; then echo "input mount is writable"; exit 1; fi
        echo "input mount is read-only"
    """)
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
    # With a network this would connect or hang until the timeout; with
    # --network none there is no route at all and connect fails at once.
    script = write_script(inputs, """
        grep -v '^ *lo:' /proc/net/dev | grep ':' && { echo "has an interface"; exit 1; }
        timeout 20 bash -c 'exec 3<>/dev/tcp/192.0.2.1/80'
    """)
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
    script = write_script(inputs, "echo 'last words before failing'\nexit 3\n")
    with pytest.raises(StepFailed) as info:
        runner.run_script("doomed step", script, {}, Mounts(read_only=[inputs], writable=[outputs]), log)
    message = str(info.value)
    assert message.startswith("doomed step failed (exit 3)")
    assert "last words before failing" in message
    assert engine.container_names(CONTAINER_PREFIX + "doomed-step") == []


def test_interrupted_step_leaves_no_container(runner, step_dirs, engine):
    inputs, outputs, log = step_dirs
    # A step that ignores SIGTERM outlives its killed client: only the
    # runner's cleanup removes its container.
    script = write_script(inputs, "trap '' TERM INT\necho started\nsleep 120\n")

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


def test_missing_input_is_one_line_error(runner, step_dirs):
    inputs, outputs, log = step_dirs
    script = write_script(inputs, "true\n")
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
