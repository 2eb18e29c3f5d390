"""Shared fixtures: the source mirror, a cache shared by end-to-end tests, the
Docker engine and base images, the session's real builds, and real HTTP
servers on loopback.

Every full build of the suite goes through `built`: the default runner
(Docker, relocpy-bookworm) and one build tag, so the dependencies are built
once and the Docker tests, the consumer test and the generated workflows'
scenario all reuse them from the shared cache (their step keys are equal).
"""

from __future__ import annotations

import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from relocpy.engine import DockerEngine
from relocpy.errors import EngineError
from relocpy.images import BootstrapRequest, bootstrap_base, default_tag
from relocpy.paths import project_root
from support import BUILD_TAG, BUILD_TARGET, SUITES, LoopbackServer, artifact_key, pack_host_python, relocpy, write_metadata

ROOT = project_root()


def pytest_collection_modifyitems(config, items):
    """The workflows scenario runs last: it removes relocpy's images to start
    from an engine without them, which the session's image fixtures made."""
    items.sort(key=lambda item: item.get_closest_marker("workflows") is not None)


def mirror_dir() -> Path:
    configured = [m for m in os.environ.get("RELOCPY_MIRRORS", "").split(",") if m and "://" not in m]
    return Path(configured[0] if configured else ROOT.parent / "shared" / "sources").resolve()


@pytest.fixture(scope="session")
def sources_mirror() -> Path:
    path = mirror_dir()
    assert (path / "SOURCES.json").is_file(), f"the offline source mirror is missing at {path}"
    return path


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    """End-to-end tests share built dependencies through this cache."""
    configured = os.environ.get("RELOCPY_CACHE_DIR")
    return Path(configured) if configured else tmp_path_factory.mktemp("relocpy-cache")


@pytest.fixture(scope="session")
def engine() -> DockerEngine:
    """A Docker engine that answers: started with .ci/start-docker when none does."""
    engine = DockerEngine()
    try:
        engine.ensure_engine()
    except EngineError:
        subprocess.run([str(ROOT / ".ci" / "start-docker")], check=True)
        engine.ensure_engine()
    return engine


@pytest.fixture(scope="session")
def base_images(engine, tmp_path_factory) -> dict[str, str]:
    """suite -> tag of a debootstrapped base image (kept when it exists)."""
    logs = tmp_path_factory.mktemp("bootstrap")
    for suite in SUITES:
        bootstrap_base(BootstrapRequest(suite=suite, tag=default_tag(suite)), logs / f"{suite}.log", engine)
    return {suite: default_tag(suite) for suite in SUITES}


@pytest.fixture(scope="session")
def built(tmp_path_factory, shared_cache, sources_mirror, base_images):
    """built(python, variant="noopt", target=BUILD_TARGET) -> the dist directory
    of that real build, made once per session. A cross-built target's build
    runs the build machine's noopt build of the same python: built once too."""
    results: dict[tuple[str, str, str], Path] = {}

    def build(python: str, variant: str = "noopt", target: str = BUILD_TARGET) -> Path:
        if (python, variant, target) not in results:
            dist = tmp_path_factory.mktemp(f"dist-{python}-{variant}-{target.split('-')[0]}")
            result = subprocess.run(
                [sys.executable, "-m", "relocpy", "build", "--python", python, "--target", target,
                 "--variant", variant, "--runner", "docker", "--dist", str(dist), "--build-tag", BUILD_TAG,
                 "--mirror", str(sources_mirror), "--cache-dir", str(shared_cache), "--offline"],
                capture_output=True, text=True, timeout=2 * 3600)
            assert result.returncode == 0, result.stderr[-4000:]
            results[python, variant, target] = dist
        return results[python, variant, target]

    return build


class FileServer:
    """A real HTTP server on 127.0.0.1 serving a directory, with fault modes:
    'truncate' (first response cut short), 'corrupt' (bytes flipped),
    'stall' (sends part, then hangs), '404'. Range requests are honoured."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.faults: dict[str, str] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.stop = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.handle(self)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def handle(self, request) -> None:
        name = request.path.lstrip("/")
        self.requests.append((name, request.headers.get("Range")))
        path = self.directory / name
        fault = self.faults.get(name)
        if fault == "404" or not path.is_file():
            request.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        ranged = request.headers.get("Range", "")
        if ranged.startswith("bytes=") and fault != "ignore-range":
            start = int(ranged[len("bytes="):].split("-")[0])
            request.send_response(206)
            request.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            request.send_response(200)
        body = data[start:]
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        if fault == "truncate":
            self.faults.pop(name)  # only the first response is cut
            request.wfile.write(body[: len(body) // 2])
            request.close_connection = True
            return
        if fault == "corrupt":
            body = bytes([body[0] ^ 0xFF]) + body[1:]
        if fault == "stall":
            request.wfile.write(body[:100])
            request.wfile.flush()
            self.stop.wait(30)
            return
        request.wfile.write(body)

    def close(self) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def file_server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    server = FileServer(root)
    yield server
    server.close()


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
