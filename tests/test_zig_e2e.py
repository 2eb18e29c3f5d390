"""End-to-end: 3.13.15 built with zig in the Docker builder (bookworm, glibc
2.36; conftest's `built`, the session's one build) is tagged manylinux_2_17
from its files and runs on bullseye (glibc 2.31)."""

from __future__ import annotations

import subprocess

import pytest

from relocpy.models import ArtifactKey, ArtifactMetadata
from relocpy.recipes import get_target, load_recipes
from support import BUILD_TARGET

pytestmark = [pytest.mark.docker, pytest.mark.e2e]
IMPORTS = "import ssl, sqlite3, lzma, bz2, zlib, ctypes, _decimal, readline, uuid"
# Runs in a bullseye container: unpack, import the bundled libraries, make a venv.
CHECK = f"""
set -eu
ldd --version | head -n 1
mkdir -p /tmp/u && tar -xzf "/dist/$ARCHIVE" -C /tmp/u
py=/tmp/u/python/bin/python3
$py -c "{IMPORTS}; import ctypes.util; assert ctypes.CDLL(None).getpid() > 0; print('imports ok', ssl.OPENSSL_VERSION, sqlite3.sqlite_version)"
$py -m venv /tmp/v
/tmp/v/bin/python -c "import sys; assert sys.prefix != sys.base_prefix; print('venv ok', sys.base_prefix)"
"""


def test_zig_docker_build_is_manylinux_2_17_and_runs_on_bullseye(built, base_images):
    target = get_target(load_recipes(), BUILD_TARGET)
    assert target.toolchain == "zig" and target.runner == "docker" and target.image == base_images["bookworm"]
    dist = built("3.13.15")
    [archive] = dist.glob("cpython-*-install_only.tar.gz")
    meta = ArtifactMetadata.model_validate_json((dist / f"{archive.name}.json").read_text())
    assert ArtifactKey.parse(archive.name).platform_tag == meta.platform_tag == "manylinux_2_17_x86_64"
    run = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "-e", f"ARCHIVE={archive.name}",
         "--mount", f"type=bind,source={dist},target=/dist,readonly", base_images["bullseye"], "bash", "-c", CHECK],
        capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "GLIBC 2.31" in run.stdout  # older than the builder's 2.36
    assert "imports ok OpenSSL 3.5" in run.stdout and "venv ok /tmp/u/python" in run.stdout
