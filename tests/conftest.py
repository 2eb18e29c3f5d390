"""Shared fixtures: the source mirror, a cache shared by end-to-end tests, and
real HTTP servers on loopback."""

from __future__ import annotations

import http.server
import os
import threading
from pathlib import Path

import pytest

from relocpy.paths import project_root

ROOT = project_root()


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
