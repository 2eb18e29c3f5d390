"""Helpers shared by the tests: artifacts from the host's CPython, the CLI, servers."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import subprocess
import sys
import sysconfig
import tarfile
import threading
import time
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from packaging import tags

from relocpy.models import ArtifactKey, ArtifactMetadata, MeasuredFacts, ValidationPolicy
from relocpy.recipes import load_recipes

REPO = Path(__file__).resolve().parents[1]
BUILD_TAG = "20261124"  # every build of the session, real or made up: its epoch is in every step key
BUILD_TARGET = "x86_64-unknown-linux-gnu"  # the target of the session's real builds (conftest.built)
SUITES = {"bullseye": "11", "bookworm": "12"}  # base images the Docker tests use, and their Debian versions
PLATFORM = "manylinux_2_17_x86_64"
EPOCH = 1_700_000_000
HOST_VERSION = "{}.{}.{}".format(*sys.version_info[:3])
MINOR = "{}.{}".format(*sys.version_info[:2])
BIN_PREFIXES = ("python", "pydoc", "idle", "2to3")


def artifact_key(version: str = HOST_VERSION, **fields) -> ArtifactKey:
    values = {"version": version, "build_tag": BUILD_TAG, "platform_tag": PLATFORM, "flavor": "install_only"}
    return ArtifactKey(**{**values, **fields})


def _skip(prefix: Path, rel: Path) -> bool:
    """Keep the interpreter alone: bin/python*, lib/libpython*, the stdlib less its
    tests and third-party packages, no static lib, no cache, no link leaving the
    prefix. The prefix may be /usr (a venv of Debian's python)."""
    parts = rel.parts
    if "__pycache__" in parts or rel.suffix == ".a":
        return True
    if (prefix / rel).is_symlink() and not (prefix / rel).resolve().is_relative_to(prefix.resolve()):
        return True  # Debian: sitecustomize.py -> /etc/python3.11/..., libpython3.11.so -> ../../x86_64-linux-gnu/...
    if parts[0] not in ("bin", "lib"):
        return True
    if len(parts) == 1:
        return False
    if parts[0] == "bin":
        return not rel.name.startswith(BIN_PREFIXES)
    if parts[1] != f"python{MINOR}":
        return not parts[1].startswith("libpython")
    return len(parts) > 2 and parts[2] in ("test", "site-packages", "idlelib", "tkinter")


def _normalized(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = EPOCH
    return info


def pack_host_python(out: Path) -> None:
    """The host's CPython prefix under python/, deterministic, as a tar.gz."""
    prefix = Path(sys.base_prefix)
    with tarfile.open(out, "w:gz", compresslevel=6) as tar:
        tar.add(prefix, arcname="python", recursive=False, filter=_normalized)
        for root, dirs, files in os.walk(prefix):
            dirs.sort()
            for name in sorted(dirs + files):
                path = Path(root) / name
                rel = path.relative_to(prefix)
                if _skip(prefix, rel):
                    if name in dirs:
                        dirs.remove(name)
                    continue
                tar.add(path, arcname=f"python/{rel.as_posix()}", recursive=False, filter=_normalized)
        site = tarfile.TarInfo(f"python/lib/python{MINOR}/site-packages")
        site.type, site.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(_normalized(site))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_metadata(archive: Path, key: ArtifactKey) -> Path:
    meta = ArtifactMetadata(
        name=archive.name,
        key=key,
        python_version=key.version,
        python_tag=f"cp{MINOR.replace('.', '')}",
        abi_tag=f"cp{MINOR.replace('.', '')}",
        abiflags="",
        target_triple="x86_64-unknown-linux-gnu",
        platform_tag=key.platform_tag,
        glibc_max="2.17",
        wheel_tags=[str(t) for t in list(tags.sys_tags())[:5]],
        variant=key.variant or "pgo+lto",
        configure_flags=[],
        components=[],
        validation=host_validation_policy(),
        measured=MeasuredFacts(openssl_version=None, sqlite_version=None, ext_suffix=sysconfig.get_config_var("EXT_SUFFIX"),
                               extension_modules=[]),
        source_date_epoch=EPOCH,
        plan_hash="0" * 64,
        sha256=sha256(archive),
        size=archive.stat().st_size,
    )
    path = archive.with_name(archive.name + ".json")
    path.write_text(meta.model_dump_json(indent=2))
    return path


def host_validation_policy(**fields) -> ValidationPolicy:
    """What an artifact packed from this host's CPython is held to."""
    values = {"platform": load_recipes().policies["manylinux_2_17_x86_64"], "enforce_floor": False,
              "excluded_modules": {}, "export_prefixes": []}
    return ValidationPolicy(**{**values, **fields})


def tar_with(out: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> None:
    with tarfile.open(out, "w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(_normalized(info), io.BytesIO(data) if data is not None else None)


def member(name: str, kind=tarfile.REGTYPE, data: bytes | None = b"x", linkname: str = "", mode=0o755):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, linkname, mode
    return info, (data if kind == tarfile.REGTYPE else None)


# --- the CLI ----------------------------------------------------------------------


def relocpy(*args: str, env: dict[str, str], check: bool = False) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "relocpy"
    result = subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"relocpy {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The failure's stderr, asserted to end in one `relocpy: error:` line and no traceback."""
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("relocpy: error: "), result.stderr
    return last


# --- a loopback HTTP server that can misbehave -------------------------------------------

DRIP_PAUSE = 0.05


class FaultyHandler(SimpleHTTPRequestHandler):
    """Serves a directory; `faults` maps a file name to truncate/truncate-once/stall,
    drip (a byte every DRIP_PAUSE seconds, with an honest Content-Length),
    drip-headers (a header line, a byte at a time, that never ends) or
    no-length (the whole body with no Content-Length, ended by closing)."""

    faults: dict[str, str]
    hits: dict[str, int]

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        name = os.path.basename(self.translate_path(self.path))
        self.hits[name] = self.hits.get(name, 0) + 1
        fault = self.faults.get(name)
        if fault == "truncate-once" and self.hits[name] > 1:
            fault = None
        if fault is None:
            return super().do_GET()
        body = Path(self.translate_path(self.path)).read_bytes()
        if fault in ("drip", "drip-headers"):
            return self._drip(body, fault == "drip-headers")
        if fault == "no-length":
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        self.wfile.flush()
        if fault == "stall":
            time.sleep(6)
        self.close_connection = True

    def _drip(self, body: bytes, headers_too: bool) -> None:
        head = f"HTTP/1.0 200 OK\r\nContent-Length: {len(body)}\r\n".encode()
        if headers_too:  # a header line that never ends
            head, body = head + b"X-Slow: ", b"z" * 60_000
        self.wfile.write(head + (b"" if headers_too else b"\r\n"))
        stop = time.monotonic() + 30
        try:
            for offset in range(len(body)):
                if time.monotonic() > stop:
                    break
                self.wfile.write(body[offset:offset + 1])
                self.wfile.flush()
                time.sleep(DRIP_PAUSE)
        except OSError:
            pass  # the client gave up, as it should
        self.close_connection = True


class LoopbackServer:
    def __init__(self, directory: Path):
        handler = type("Handler", (FaultyHandler,), {"faults": {}, "hits": {}})
        self.handler = handler
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(directory)))
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> LoopbackServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def faults(self) -> dict[str, str]:
        return self.handler.faults


# --- archives, made byte by byte ---------------------------------------------------------

SHELL_PYTHON = b"#!/bin/sh\nexit 0\n"  # passes install's smoke test (`python3 -c ...`) in a few ms


def tar_bytes(members: list[tuple[tarfile.TarInfo, bytes | None]], format=tarfile.GNU_FORMAT) -> bytes:
    """An uncompressed tar of members made by member()."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=format) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(_normalized(info), io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def header(name: str, size: int = 0, kind=tarfile.REGTYPE, mtime: int = EPOCH, linkname: str = "") -> bytes:
    """One 512-byte ustar header block."""
    info = tarfile.TarInfo(name)
    info.size, info.type, info.mtime, info.mode, info.linkname = size, kind, mtime, 0o755, linkname
    return info.tobuf(tarfile.USTAR_FORMAT)


def blocks(data: bytes) -> bytes:
    """Member data padded to whole blocks."""
    return data + bytes(-len(data) % tarfile.BLOCKSIZE)


def extended(records: bytes, kind=tarfile.XHDTYPE) -> bytes:
    """A pax (or GNU long-name) header carrying records, as its own header and data."""
    return header("././@PaxHeader", len(records), kind) + blocks(records)


def pax_record(key: str, value: str) -> bytes:
    body = f" {key}={value}\n".encode()
    length = len(body) + len(str(len(body)))
    length += len(str(length)) - len(str(len(body)))
    return str(length).encode() + body


def regular(name: str, data: bytes = b"x", **fields) -> bytes:
    return header(name, len(data), **fields) + blocks(data)


END = bytes(2 * tarfile.BLOCKSIZE)


def gz(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=6, mtime=0)


def zst(data: bytes, frame: int | None = None, skippable: bool = False) -> bytes:
    """zstd, in frames of `frame` bytes of input if given; each after a skippable
    frame holding its size when `skippable`, as pzstd writes them."""
    import zstandard

    compressor = zstandard.ZstdCompressor(level=3)
    step = frame or max(1, len(data))
    out = []
    for start in range(0, max(1, len(data)), step):
        body = compressor.compress(data[start:start + step])
        if skippable:
            out.append(b"\x50\x2a\x4d\x18" + (4).to_bytes(4, "little") + len(body).to_bytes(4, "little"))
        out.append(body)
    return b"".join(out)


# --- memory and time of a child process ---------------------------------------------------

# The peak is VmHWM (KiB) of the child's own address space. Not getrusage's
# ru_maxrss: Linux carries the parent's high-water mark across exec into it,
# so under a large pytest process every child would seem as large.
PEAK_RSS_KIB = "int(next(line for line in open('/proc/self/status') if line.startswith('VmHWM:')).split()[1])"

_PEAK_WRAPPER = f"""
import atexit, os, runpy, sys
def _report():
    with open(os.environ["PEAK_RSS_FILE"], "w") as out:
        out.write(str({PEAK_RSS_KIB}))
atexit.register(_report)
sys.argv[0] = "relocpy"
runpy.run_module("relocpy", run_name="__main__")
"""


def relocpy_measured(*args: str, env: dict[str, str], scratch: Path) -> tuple[subprocess.CompletedProcess, int, float]:
    """relocpy ARGS in a child: (its result, its peak RSS in MiB, its wall time in seconds)."""
    report = scratch / f"peak-rss-{time.monotonic_ns()}"
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", _PEAK_WRAPPER, *args], capture_output=True, text=True,
                            env={**env, "PEAK_RSS_FILE": str(report)}, timeout=300)
    return result, int(report.read_text()) // 1024, time.monotonic() - started


# --- a signed channel serving one archive, and what a versions dir holds -----------------------


@contextmanager
def channel(tmp_path: Path, archive: bytes, signing_key: tuple[Path, str], env: dict[str, str],
            version: str = "3.99.1", base_url: str | None = None):
    """A dist of one archive, signed and served on loopback: yields (server,
    the environment of a client trusting it, its versions dir)."""
    dist = tmp_path / "dist"
    dist.mkdir()
    key = artifact_key(version=version)
    (dist / key.filename).write_bytes(archive)
    write_metadata(dist / key.filename, key)
    with LoopbackServer(dist) as server:
        relocpy("index", "build", str(dist), "--base-url", base_url or server.url, "--sign", str(signing_key[0]),
                env=env, check=True)
        versions = tmp_path / "versions"
        yield server, {**env, "RELOCPY_INDEX_URL": server.url, "RELOCPY_TRUSTED_KEYS": signing_key[1],
                       "RELOCPY_INSTALL_DIR": str(versions)}, versions


def leftovers(versions: Path) -> list[str]:
    """Everything in a versions dir but its lock and an empty store: [] when nothing is installed."""
    if not versions.exists():
        return []
    found = [p.name for p in versions.iterdir() if p.name not in (".lock", ".store")]
    store = versions / ".store"
    return sorted(found + ([f".store/{p.name}" for p in store.iterdir()] if store.is_dir() else []))
