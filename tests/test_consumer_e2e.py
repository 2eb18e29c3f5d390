"""End-to-end for consumers: a real build's three flavors signed, published,
served, then installed by `relocpy install` and by `uv python install`, each
taking the flavor it picks by itself (install_only_stripped).

The archives come from RELOCPY_TEST_DIST when set (a dist dir another session
built), else from the session's noopt build (conftest's `built`, which
test_build_e2e checks too). Flavors, stripping and the index do not depend on
the variant, and an LTO build would add about 15 minutes to the run.
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


@pytest.fixture(scope="module")
def real_artifacts(request) -> list[Path]:
    """Archives and metadata of one real 3.13.15 build: its three flavors."""
    configured = os.environ.get("RELOCPY_TEST_DIST")
    if configured:
        source = Path(configured)
    else:
        source = request.getfixturevalue("built")(VERSION)
    found = sorted(source.glob(f"cpython-{VERSION}+*"))
    flavors = {p.name.split("-")[-1].split(".")[0] for p in found if not p.name.endswith(".json")}
    assert flavors == {"install_only", "install_only_stripped", "full"}, f"not one build's three flavors in {source}"
    missing = [p.name for p in found if not p.name.endswith(".json") and not p.with_name(p.name + ".json").is_file()]
    assert not missing, f"no metadata next to {missing}"
    return found


@pytest.fixture
def stripped(real_artifacts) -> tuple[Path, Path]:
    """(archive, metadata) of the flavor both clients pick."""
    [archive] = [p for p in real_artifacts if p.name.endswith("-install_only_stripped.tar.gz")]
    return archive, archive.with_name(archive.name + ".json")


@pytest.fixture
def published(real_artifacts, signing_key, env, tmp_path):
    """The build's archives signed into an index, published to a directory, served on loopback."""
    dist, site = tmp_path / "dist", tmp_path / "site"
    dist.mkdir()
    site.mkdir()
    for path in real_artifacts:  # a copy: index build writes into dist, and the source may be shared
        shutil.copy(path, dist / path.name)
    key, _ = signing_key
    with LoopbackServer(site) as server:
        relocpy("index", "build", str(dist), "--base-url", server.url, "--sign", str(key), env=env, check=True)
        relocpy("publish", str(dist), "--to", str(site), env=env, check=True)
        yield server


def test_relocpy_and_uv_install_the_stripped_flavor_and_it_runs(published, stripped, signing_key, env, tmp_path):
    server, public = published, signing_key[1]
    archive = stripped[0].name
    meta = ArtifactMetadata.model_validate_json(stripped[1].read_text())
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
    # one download each, both from our server, and only of the stripped flavor
    assert server.handler.hits.get(archive) == 2
    assert not [name for name in server.handler.hits if name.endswith(("-install_only.tar.gz", "-full.tar.zst"))]


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
