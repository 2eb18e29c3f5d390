from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

from support import LoopbackServer, artifact_key, pack_host_python, relocpy, write_metadata


@pytest.fixture(scope="session")
def host_artifact(tmp_path_factory) -> tuple[Path, Path]:
    """(archive, metadata) of the host's CPython packed as an install_only artifact, built once."""
    out = tmp_path_factory.mktemp("artifact")
    archive = out / artifact_key().filename
    pack_host_python(archive)
    return archive, write_metadata(archive, artifact_key())


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    """An environment whose data, config and cache dirs are this test's own."""
    home = tmp_path / "home"
    values = {
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_CACHE_HOME": str(home / "cache"),
        "RELOCPY_TIMEOUT": "2",
        "RELOCPY_RETRIES": "3",
    }
    kept = {k: v for k, v in os.environ.items() if not k.startswith(("RELOCPY_", "XDG_", "AWS_", "UV_"))}
    return {**kept, **values}


@pytest.fixture
def signing_key(tmp_path, env) -> tuple[Path, str]:
    key = tmp_path / "keys" / "release.key"
    public = relocpy("keys", "generate", "--out", str(key), env=env, check=True).stdout.strip()
    return key, public


@pytest.fixture
def dist(tmp_path, host_artifact) -> Path:
    """A dist dir holding a copy of the host artifact (tests may tamper with it)."""
    path = tmp_path / "dist"
    path.mkdir()
    for source in host_artifact:
        shutil.copy(source, path / source.name)
    return path


@pytest.fixture
def served(dist):
    with LoopbackServer(dist) as server:
        yield server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint():
    """moto's S3-speaking server on loopback, shared by the whole test run."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()
