"""A cross-built target end to end: 3.13.15 for aarch64 glibc, built in Docker
by zig on this x86_64 host (its build running an x86_64 noopt build of 3.13.15,
its build python), validated under qemu-user from the moved
archives, and then chosen by `relocpy install` run by that aarch64 interpreter
under emulation, from a signed index that holds the x86_64 build too."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from relocpy.models import ArtifactMetadata
from emulated_consumer import consumer_venv, install_with, installed_platform
from support import LoopbackServer, relocpy

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.cross]
VERSION, MINOR = "3.13.15", "3.13"
CROSS = "aarch64-unknown-linux-gnu"


@pytest.fixture(scope="module")
def aarch64_dist(built) -> Path:
    return built(VERSION, "noopt", CROSS)


def test_the_aarch64_build_is_tagged_from_its_files_and_validated_under_emulation(aarch64_dist):
    metas = [ArtifactMetadata.model_validate_json(p.read_text()) for p in sorted(aarch64_dist.glob("*.json"))]
    assert sorted(m.key.flavor for m in metas) == ["full", "install_only", "install_only_stripped"]
    for meta in metas:
        assert meta.platform_tag == "manylinux_2_17_aarch64" and meta.target_triple == CROSS, meta.name
        assert meta.validation.platform.run.how == "emulator"  # the policy it passed: run under qemu
        # what the emulated interpreter itself reported
        assert meta.measured.ext_suffix == ".cpython-313-aarch64-linux-gnu.so"
        assert meta.measured.openssl_version.startswith("OpenSSL 3.")
        assert any(tag.endswith("manylinux_2_17_aarch64") for tag in meta.wheel_tags)
        assert {"_ssl", "_sqlite3", "_ctypes", "_curses", "readline", "_uuid", "_lzma"} <= set(meta.measured.extension_modules)


def test_relocpy_install_run_by_the_aarch64_interpreter_picks_the_aarch64_build(aarch64_dist, built, signing_key, env,
                                                                                  tmp_path):
    dist, site = tmp_path / "dist", tmp_path / "site"
    dist.mkdir()
    site.mkdir()
    for source in (aarch64_dist, built(VERSION)):  # both arches, one index
        for path in source.glob(f"cpython-{VERSION}+*"):
            shutil.copy(path, dist / path.name)
    key, public = signing_key
    [archive] = aarch64_dist.glob("*-install_only.tar.gz")
    aarch64_python, consumer_env = consumer_venv(archive, tmp_path / "consumer")
    emulated = {**env, **consumer_env}
    with LoopbackServer(site) as server:
        relocpy("index", "build", str(dist), "--base-url", server.url, "--sign", str(key), env=env, check=True)
        relocpy("publish", str(dist), "--to", str(site), env=env, check=True)
        versions = tmp_path / "versions"
        done = install_with(aarch64_python, emulated, MINOR, "noopt", server.url + "/index.json", public, versions)
        assert done.returncode == 0, done.stderr[-3000:]
    assert installed_platform(versions) == "manylinux_2_17_aarch64"
    [installed] = versions.glob(f"cpython-{VERSION}*/bin/python{MINOR}")
    assert installed.resolve().read_bytes()[18] == 0xB7  # e_machine: EM_AARCH64
    ran = subprocess.run([str(installed), "-c", "import platform, ssl; print(platform.machine(), ssl.OPENSSL_VERSION)"],
                         capture_output=True, text=True, env=emulated, timeout=300)
    assert ran.returncode == 0 and ran.stdout.startswith("aarch64 OpenSSL "), ran
