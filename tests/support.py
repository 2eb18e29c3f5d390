"""Helpers shared by the tests: artifacts from the host's CPython, the CLI, servers."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import sysconfig
import tarfile
import threading
import time
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


class FaultyHandler(SimpleHTTPRequestHandler):
    """Serves a directory; `faults` maps a file name to truncate/truncate-once/stall."""

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
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        self.wfile.flush()
        if fault == "stall":
            time.sleep(6)
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
