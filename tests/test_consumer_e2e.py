"""End-to-end for consumers: a real interpreter built by the pipeline, signed,
published, served, then installed by `relocpy install` and by `uv python install`.

The archive comes from RELOCPY_TEST_DIST when set (a dist dir another session
built), else it is built here once, sharing dependencies through the session
cache as test_build_e2e does.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from relocpy.models import ArtifactMetadata
from support import LoopbackServer, relocpy

pytestmark = pytest.mark.e2e
VERSION = "3.13.15"
MINOR = "3.13"
TARGET = "x86_64-unknown-linux-gnu"
BUILD_TAG = "20261124"  # the tag test_build_e2e uses: same cache keys, no second CPython build


def build_dist(out: Path, cache: Path, mirror: Path) -> Path:
    argv = [sys.executable, "-m", "relocpy", "build", "--python", VERSION, "--target", TARGET, "--variant", "noopt",
            "--runner", "native", "--build-tag", BUILD_TAG, "--mirror", str(mirror), "--cache-dir", str(cache),
            "--offline", "--dist", str(out)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, done.stderr[-4000:]
    return out


@pytest.fixture(scope="module")
def real_artifact(request, tmp_path_factory) -> tuple[Path, Path]:
    """(archive, metadata) of a real 3.13.15 install_only build."""
    configured = os.environ.get("RELOCPY_TEST_DIST")
    if configured:
        source = Path(configured)
    else:
        cache, mirror = request.getfixturevalue("shared_cache"), request.getfixturevalue("sources_mirror")
        source = build_dist(tmp_path_factory.mktemp("real-dist"), cache, mirror)
    found = sorted(source.glob(f"cpython-{VERSION}+*-install_only.tar.gz"))
    assert found, f"no cpython-{VERSION} install_only archive in {source}"
    archive = found[-1]
    metadata = archive.with_name(archive.name + ".json")
    assert metadata.is_file(), f"{metadata.name} is missing next to the archive"
    return archive, metadata


@pytest.fixture
def published(real_artifact, signing_key, env, tmp_path):
    """The artifact signed into an index, published to a directory, served on loopback."""
    dist, site = tmp_path / "dist", tmp_path / "site"
    dist.mkdir()
    site.mkdir()
    for path in real_artifact:  # a copy: index build writes into dist, and the source may be shared
        shutil.copy(path, dist / path.name)
    key, _ = signing_key
    with LoopbackServer(site) as server:
        relocpy("index", "build", str(dist), "--base-url", server.url, "--sign", str(key), env=env, check=True)
        relocpy("publish", str(dist), "--to", str(site), env=env, check=True)
        yield server


def test_relocpy_and_uv_install_the_real_artifact(published, real_artifact, signing_key, env, tmp_path):
    server, public = published, signing_key[1]
    archive = real_artifact[0].name
    meta = ArtifactMetadata.model_validate_json(real_artifact[1].read_text())
    variant = ["--variant", meta.key.variant] if meta.key.variant else []
    versions = tmp_path / "versions"

    relocpy("install", MINOR, *variant, "--index", server.url + "/index.json", "--trusted-key", public,
            "--install-dir", str(versions), env=env, check=True)
    probe = "import ssl, sqlite3, sys; print(sys.prefix); print(ssl.OPENSSL_VERSION); print(sqlite3.sqlite_version)"
    ran = relocpy("run", MINOR, *variant, "--install-dir", str(versions), "--", "-c", probe, env=env, check=True)
    prefix, openssl, sqlite = ran.stdout.strip().splitlines()
    assert Path(prefix).resolve() == (versions / f"cpython-{VERSION}{'+' + meta.key.variant if variant else ''}").resolve()
    assert openssl.startswith("OpenSSL ") and re.fullmatch(r"3\.\d+\.\d+", sqlite), ran.stdout

    exported = tmp_path / "uv-downloads.json"
    relocpy("index", "export-uv", server.url, "--trusted-key", public, "--out", str(exported), env=env, check=True)
    uv_python = uv_install(exported, env, tmp_path)
    offline = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "no_proxy": "*", "UV_OFFLINE": "1"}
    done = subprocess.run([str(uv_python), "-c", "import sys, sqlite3; print(sys.prefix)"],
                          capture_output=True, text=True, env=offline, timeout=60)
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).resolve().is_relative_to((tmp_path / "uv-pythons").resolve())
    assert server.handler.hits.get(archive) == 2  # one download each, both from our server


def uv_install(exported: Path, env: dict[str, str], tmp_path: Path) -> Path:
    """`uv python install` through our export into tmp_path/uv-pythons; the interpreter it put there."""
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    assert uv, "uv is a test dependency: pip install -e '.[test]'"
    uv_env = {**env, "UV_PYTHON_INSTALL_DIR": str(tmp_path / "uv-pythons"), "UV_CACHE_DIR": str(tmp_path / "uv-cache"),
              "UV_PYTHON_BIN_DIR": str(tmp_path / "uv-bin"), "UV_NO_CONFIG": "1"}
    done = subprocess.run([uv, "python", "install", VERSION, "--python-downloads-json-url", str(exported)],
                          env=uv_env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    found = sorted((tmp_path / "uv-pythons").glob(f"cpython-{VERSION}*/bin/python{MINOR}"))
    assert len(found) == 1, found
    return found[0]
