"""A cross-built target end to end: 3.13.15 for aarch64 glibc, built in Docker
by zig on this x86_64 host (its build running an x86_64 noopt build of 3.13.15,
its build python), validated under qemu-user from the moved
archives, and then chosen by `relocpy install` run by that aarch64 interpreter
under emulation, from a signed index that holds the x86_64 build too."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from relocpy.models import ArtifactMetadata
from relocpy.paths import project_root
from relocpy.recipes import load_recipes
from relocpy.emulation import emulation_env
from support import LoopbackServer, relocpy

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.cross]
ROOT = project_root()
VERSION, MINOR = "3.13.15", "3.13"
CROSS = "aarch64-unknown-linux-gnu"
PLATFORM = load_recipes().policies["manylinux_2_17_aarch64"]
# relocpy's consumer side (pyproject.toml: dependencies), as aarch64 wheels.
CONSUMER_REQUIREMENTS = ["pydantic>=2.6", "packaging>=24", "certifi", "cryptography>=42", "isal>=1.6", "rich>=13"]


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
    aarch64_python = consumer_venv(aarch64_dist, tmp_path)
    emulated = {**env, **emulation_env(PLATFORM), "PYTHONPATH": str(ROOT / "tools")}
    with LoopbackServer(site) as server:
        relocpy("index", "build", str(dist), "--base-url", server.url, "--sign", str(key), env=env, check=True)
        relocpy("publish", str(dist), "--to", str(site), env=env, check=True)
        versions = tmp_path / "versions"
        done = subprocess.run([str(aarch64_python), "-m", "relocpy", "install", MINOR, "--variant", "noopt",
                               "--index", server.url + "/index.json",
                               "--trusted-key", public, "--install-dir", str(versions)],
                              capture_output=True, text=True, env=emulated, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
    [installed] = versions.glob(f"cpython-{VERSION}*/bin/python{MINOR}")
    assert installed.resolve().read_bytes()[18] == 0xB7  # e_machine: EM_AARCH64
    ran = subprocess.run([str(installed), "-c", "import platform, ssl; print(platform.machine(), ssl.OPENSSL_VERSION)"],
                         capture_output=True, text=True, env=emulated, timeout=300)
    assert ran.returncode == 0 and ran.stdout.startswith("aarch64 OpenSSL "), ran


def consumer_venv(aarch64_dist: Path, tmp_path: Path) -> Path:
    """A venv of the built aarch64 interpreter holding relocpy's consumer
    dependencies: aarch64 wheels fetched by the host's pip, installed offline
    by the emulated one."""
    [archive] = aarch64_dist.glob("*-install_only.tar.gz")
    unpacked = tmp_path / "aarch64-python"
    unpacked.mkdir()
    subprocess.run(["tar", "-xzf", str(archive), "-C", str(unpacked)], check=True)
    wheels = tmp_path / "aarch64-wheels"
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--dest", str(wheels),
                    "--platform", "manylinux_2_17_aarch64", "--platform", "manylinux2014_aarch64",
                    "--python-version", MINOR, "--implementation", "cp", *CONSUMER_REQUIREMENTS],
                   check=True, timeout=600)
    venv = tmp_path / "aarch64-venv"
    emulated = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **emulation_env(PLATFORM)}
    subprocess.run([str(unpacked / "python" / "bin" / "python3"), "-m", "venv", str(venv)], check=True, env=emulated,
                   timeout=600)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-index", "--find-links",
                    str(wheels), *CONSUMER_REQUIREMENTS], check=True, env=emulated, timeout=900)
    return venv / "bin" / "python"
