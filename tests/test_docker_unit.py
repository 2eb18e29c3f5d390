"""The Docker runner without an engine: Dockerfile rendering and command lines."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from relocpy.engine import DockerEngine
from relocpy.errors import EngineError
from relocpy.images import BootstrapRequest, debootstrap_argv, default_tag
from relocpy.models import Target
from relocpy.recipes import get_target, load_recipes
from relocpy.runners import Mounts, get_runner
from relocpy.runners.docker import (
    CONTAINER_PREFIX,
    DockerRunner,
    builder_identity,
    builder_tag,
    container_name,
    package_list_digest,
    render_dockerfile,
    run_argv,
)


def linux_target(**changes) -> Target:
    target = get_target(load_recipes(), "x86_64-unknown-linux-gnu")
    return target.model_copy(update={"image": "relocpy-bullseye", **changes})


def test_dockerfile_starts_from_the_targets_base_image():
    text = render_dockerfile(linux_target())
    from_lines = [line for line in text.splitlines() if line.startswith("FROM ")]
    assert from_lines == ["FROM relocpy-bullseye"]


def test_dockerfile_installs_what_build_scripts_need():
    text = render_dockerfile(linux_target())
    for package in ["gcc", "g++", "make", "autoconf", "automake", "libtool", "pkgconf", "perl",
                    "patchelf", "bison", "xz-utils", "zstd", "file", "ca-certificates", "python3", "patch"]:
        assert f"      {package} \\\n" in text, package
    assert "rm -rf /var/lib/apt/lists/*" in text


def test_builder_tag_follows_the_rendered_text():
    bullseye = render_dockerfile(linux_target())
    bookworm = render_dockerfile(linux_target(image="relocpy-bookworm"))
    assert builder_tag(bullseye) == builder_tag(render_dockerfile(linux_target()))
    assert builder_tag(bullseye) != builder_tag(bookworm)
    assert builder_tag(bullseye).startswith("relocpy-builder:")
    assert len(builder_tag(bullseye).split(":")[1]) == 16


def test_identity_changes_with_the_builder_image_and_its_base():
    bullseye, bookworm = render_dockerfile(linux_target()), render_dockerfile(linux_target(image="relocpy-bookworm"))
    assert builder_identity(bullseye, "sha256:1") == f"docker:{builder_tag(bullseye)}@sha256:1"
    assert builder_identity(bullseye, "sha256:1") != builder_identity(bookworm, "sha256:1")
    assert builder_identity(bullseye, "sha256:1") != builder_identity(bullseye, "sha256:2")  # other base contents


def test_package_list_digest_is_the_set_of_packages_not_their_order():
    listing = "zlib1g 1:1.2.13.dfsg-1 amd64\nbash 5.2.15-2+b2 amd64\n"
    assert package_list_digest(listing) == package_list_digest("bash 5.2.15-2+b2 amd64\n\nzlib1g 1:1.2.13.dfsg-1 amd64")
    assert package_list_digest(listing).startswith("packages:")
    assert package_list_digest(listing) != package_list_digest(listing.replace("2+b2", "2+b3"))  # an update


def test_target_without_image_is_one_line_error():
    with pytest.raises(EngineError, match="has no base image"):
        render_dockerfile(linux_target(image=""))


def test_container_names_are_unique_and_valid():
    names = {container_name("build zlib/1.3 (x86_64)") for _ in range(50)}
    assert len(names) == 50
    for name in names:
        assert name.startswith(CONTAINER_PREFIX + "build-zlib-1.3-x86_64-")
        assert all(ch.isalnum() or ch in "_.-" for ch in name)


def test_run_argv_exact():
    mounts = Mounts(read_only=[Path("/src/zlib"), Path("/work/scripts")], writable=[Path("/out/zlib"), Path("/tmp/w")])
    argv = run_argv("relocpy-step-x-1", "relocpy-builder:abc", Path("/work/scripts/zlib.sh"),
                    {"CC": "gcc", "CFLAGS": "-O2 -fPIC"}, mounts)
    assert argv == [
        "docker", "run", "--rm", "--name", "relocpy-step-x-1", "--network", "none", "--user", "0:0", "--init",
        "--workdir", "/out/zlib",
        "--mount", "type=bind,source=/src/zlib,target=/src/zlib,readonly",
        "--mount", "type=bind,source=/work/scripts,target=/work/scripts,readonly",
        "--mount", "type=bind,source=/out/zlib,target=/out/zlib",
        "--mount", "type=bind,source=/tmp/w,target=/tmp/w",
        "-e", "CC=gcc", "-e", "CFLAGS=-O2 -fPIC",
        "relocpy-builder:abc", "bash", "-euo", "pipefail", "/work/scripts/zlib.sh",
    ]


def test_run_argv_mounts_a_script_outside_every_mount():
    mounts = Mounts(read_only=[], writable=[Path("/out")])
    argv = run_argv("n", "img", Path("/elsewhere/step.sh"), {}, mounts)
    assert "type=bind,source=/elsewhere/step.sh,target=/elsewhere/step.sh,readonly" in argv
    assert argv[-1] == "/elsewhere/step.sh"


def test_run_argv_quotes_awkward_paths():
    mounts = Mounts(read_only=[Path("/a dir/with,comma")], writable=[Path("/w:colon")])
    argv = run_argv("n", "img", Path("/w:colon/s.sh"), {}, mounts)
    assert '"source=/a dir/with,comma"' in argv[argv.index("--mount") + 1]
    assert "type=bind,source=/w:colon,target=/w:colon" in argv
    # the script is inside a writable mount: no extra mount for it
    assert sum(arg == "--mount" for arg in argv) == 2


def test_run_argv_without_writable_mounts_works_in_tmp():
    argv = run_argv("n", "img", Path("/s/x.sh"), {}, Mounts(read_only=[Path("/s")], writable=[]))
    assert argv[argv.index("--workdir") + 1] == "/tmp"


def test_get_runner_docker_is_lazy():
    # Building the runner must not need an engine; only running a step does.
    runner = get_runner("docker", linux_target())
    assert isinstance(runner, DockerRunner) and runner.name == "docker"


def test_missing_client_is_one_line_error():
    engine = DockerEngine(client="relocpy-no-such-docker-client")
    with pytest.raises(EngineError) as info:
        engine.ensure_engine()
    assert "\n" not in str(info.value)
    assert "install docker.io" in str(info.value)


@pytest.mark.skipif(shutil.which("docker") is None, reason="needs the docker client (not an engine)")
def test_unreachable_engine_is_one_line_error(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/relocpy.sock")
    with pytest.raises(EngineError) as info:
        DockerEngine().ensure_engine()
    assert str(info.value).startswith("no Docker engine reachable: start one with `dockerd")
    assert "\n" not in str(info.value)


def test_debootstrap_command_line():
    rootfs = Path("/tmp/r")
    request = BootstrapRequest(suite="bullseye", tag=default_tag("bullseye"))
    assert request.tag == "relocpy-bullseye"
    assert debootstrap_argv(request, rootfs) == ["debootstrap", "--variant=minbase", "bullseye", "/tmp/r"]
    mirrored = request.model_copy(update={"mirror": "file:///srv/debian"})
    assert debootstrap_argv(mirrored, rootfs)[-1] == "file:///srv/debian"
