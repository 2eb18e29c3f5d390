"""Ctrl-C and SIGTERM in the middle of a transfer from a server that drips
its bytes: one `relocpy: error: interrupted` line and exit 130 (`terminated`,
143), soon, and no partial file left in the cache or the install directory.
"""

from __future__ import annotations

import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cli_outcome import client_env, refused, run, start
from support import MINOR
from relocpy.fetch import CANCEL_GRACE

DRIP_BYTES, DRIP_EVERY = 16, 0.2  # a server this slow never finishes, and never times out either
PLAN = ("--python", "3.13.15", "--target", "x86_64-unknown-linux-gnu", "--variant", "noopt")


class DripServer:
    """Serves files of a directory whole, except those whose names end in
    `drip`: of those, a few bytes at a time, forever. Counts the drips begun."""

    def __init__(self, directory: Path | None = None, drip: tuple[str, ...] = ("",)):
        self.directory, self.drip, self.dripping = directory, drip, threading.Semaphore(0)
        self.stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                server.answer(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def answer(self, request: BaseHTTPRequestHandler) -> None:
        name = request.path.lstrip("/").replace("%2B", "+")
        if not name.endswith(self.drip):
            data = (self.directory / name).read_bytes()
            request.send_response(200)
            request.send_header("Content-Length", str(len(data)))
            request.end_headers()
            request.wfile.write(data)
            return
        # The size the index signs, where there is one (more is refused before a byte is read).
        real = self.directory / name if self.directory else None
        request.send_response(200)
        request.send_header("Content-Length", str(real.stat().st_size if real and real.is_file() else 1 << 30))
        request.end_headers()
        self.dripping.release()
        try:
            while not self.stop.wait(DRIP_EVERY):
                request.wfile.write(b"x" * DRIP_BYTES)
                request.wfile.flush()
        except OSError:
            pass  # the client went away

    def wait_for_drips(self, count: int) -> None:
        for _ in range(count):
            assert self.dripping.acquire(timeout=60), "the command never asked for the file"

    def close(self) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def dripping():
    server = DripServer()
    yield server
    server.close()


def partial_files(*roots: Path) -> list[Path]:
    return [path for root in roots if root.exists() for path in root.rglob("*")
            if path.name.endswith(".part") or path.name.startswith((".staging-", ".tmp"))]


def interrupted_fetch(dripping: DripServer, tmp_path: Path, *signals: signal.Signals):
    """`relocpy fetch` of a whole plan (its components in parallel) from the
    dripping server, stopped by the signals once four downloads are under way."""
    cache = tmp_path / "cache"
    process = start("fetch", *PLAN, "--mirror", dripping.url, "--cache-dir", str(cache), "--jobs", "4",
                    env=client_env(tmp_path / "home"))
    dripping.wait_for_drips(4)
    started = time.monotonic()
    for number in signals:
        process.send_signal(number)
        time.sleep(0.3)
    stdout, stderr = process.communicate(timeout=60)
    took = time.monotonic() - started
    return process.returncode, stdout, stderr, took, cache


def outcome(code: int, stdout: str, stderr: str):
    from subprocess import CompletedProcess

    return CompletedProcess(args=[], returncode=code, stdout=stdout, stderr=stderr)


@pytest.mark.parametrize("signals, code, line", [
    ((signal.SIGINT,), 130, "relocpy: error: interrupted"),
    ((signal.SIGTERM,), 143, "relocpy: error: terminated"),
    ((signal.SIGINT, signal.SIGINT), 130, "relocpy: error: interrupted"),
], ids=["Ctrl-C", "SIGTERM", "Ctrl-C twice"])
def test_an_interrupted_parallel_fetch_is_one_line_and_leaves_no_partial_file(signals, code, line, dripping, tmp_path):
    returncode, stdout, stderr, took, cache = interrupted_fetch(dripping, tmp_path, *signals)
    assert refused(outcome(returncode, stdout, stderr), code) == line
    assert stderr == line + "\n"
    assert took < CANCEL_GRACE + 0.3 * len(signals) + 3, f"{took:.1f}s to stop"
    assert partial_files(cache) == []
    assert [p for p in (cache / "sources").rglob("*") if p.is_file()] == []  # nothing whole either: all dripped


def test_an_interrupted_install_download_stops_at_once_and_leaves_nothing(dist, signing_key, tmp_path):
    """One download runs in the main thread: Ctrl-C stops even a read that waits for bytes."""
    key, public = signing_key
    server = DripServer(dist, drip=(".tar.gz",))
    try:
        built = run("index", "build", str(dist), "--base-url", server.url, "--sign", str(key),
                    env=client_env(tmp_path / "publisher"))
        assert built.returncode == 0, built.stderr
        home, versions = tmp_path / "home", tmp_path / "versions"
        process = start("install", MINOR, "--index", server.url + "/index.json", "--trusted-key", public,
                        env=client_env(home, RELOCPY_INSTALL_DIR=str(versions)))
        server.wait_for_drips(1)
        time.sleep(0.5)
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
        took = time.monotonic() - started
    finally:
        server.close()
    assert refused(outcome(process.returncode, stdout, stderr), 130) == "relocpy: error: interrupted"
    assert took < 2, f"{took:.1f}s to stop"
    assert partial_files(home, versions) == []
    assert not versions.exists() or [p.name for p in versions.iterdir()] == [".lock"]
