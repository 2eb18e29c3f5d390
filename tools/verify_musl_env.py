#!/usr/bin/env python3
"""Prove an x86_64 musl build where there is no glibc at all: sign the
archives of DIST into an index, serve it on loopback, export it for uv, and in
a container whose root holds only musl's loader, a musl-linked /bin/sh stand-in
(tools/musl_root_sh.c) and uv's static musl binary, run `uv python install`
from that export, then the interpreter it installed. Prints what each step
saw, one line each; exits non-zero on the first failure.

    python tools/verify_musl_env.py DIST UV_MUSL_WHEEL

DIST: a dist directory with one x86_64 musl build (three flavors and their
metadata). UV_MUSL_WHEEL: uv's musllinux x86_64 wheel, e.g. from
`pip download uv==<uv --version> --platform musllinux_1_1_x86_64 --only-binary=:all: --no-deps`.
Needs the Docker engine (.ci/start-docker) and Debian's musl package.
"""

from __future__ import annotations

import functools
import http.server
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import zipfile
from pathlib import Path

from relocpy.toolchain import zig_dir

ROOT = Path(__file__).resolve().parents[1]
MUSL_LIBC = Path("/usr/lib/x86_64-linux-musl/libc.so")  # Debian's musl: the loader is libc itself
LOADER = "lib/ld-musl-x86_64.so.1"
IMAGE = "relocpy-musl-probe"
PROBE = ("import ctypes, lzma, platform, sqlite3, ssl, sys, zlib; "
         "print(sys.version.split()[0], platform.libc_ver(), ssl.OPENSSL_VERSION, sqlite3.sqlite_version)")


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def relocpy(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "relocpy", *args], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"relocpy {' '.join(args[:2])} failed: {done.stderr.strip()}")
    return done.stdout


def musl_root(tmp: Path, uv_wheel: Path) -> bytes:
    """The root file system, as a tar stream for `docker import`."""
    sh = tmp / "sh"
    subprocess.run([str(zig_dir() / "zig"), "cc", "-target", "x86_64-linux-musl", "-dynamic", "-O2",
                    str(ROOT / "tools" / "musl_root_sh.c"), "-o", str(sh)], check=True,
                   env={"ZIG_GLOBAL_CACHE_DIR": str(tmp / "zig"), "ZIG_LOCAL_CACHE_DIR": str(tmp / "zig"), "PATH": "/usr/bin:/bin"})
    with zipfile.ZipFile(uv_wheel) as wheel:
        uv = wheel.read(next(n for n in wheel.namelist() if n.endswith(".data/scripts/uv")))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for directory in ("lib", "bin", "usr/local/bin", "tmp", "root", "work"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if directory == "tmp" else 0o755
            tar.addfile(info)
        for name, data in ((LOADER, MUSL_LIBC.read_bytes()), ("bin/sh", sh.read_bytes()), ("usr/local/bin/uv", uv)):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def in_container(*argv: str, work: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "run", "--rm", "--network", "host", "-v", f"{work}:/work", "-e", "HOME=/root",
                           "-e", "UV_PYTHON_INSTALL_DIR=/work/pythons", "-e", "UV_NO_CONFIG=1", "-e", "UV_CACHE_DIR=/tmp/uv",
                           IMAGE, *argv], capture_output=True, text=True, timeout=900)


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    dist, uv_wheel = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
    with tempfile.TemporaryDirectory(prefix="relocpy-musl-env-") as name:
        tmp = Path(name)
        signed, site, work = tmp / "dist", tmp / "site", tmp / "work"
        for directory in (signed, site, work):
            directory.mkdir()
        for path in dist.glob("cpython-*musllinux_1_2_x86_64*"):
            shutil.copy(path, signed / path.name)
        public = relocpy("keys", "generate", "--out", str(tmp / "release.key")).strip()
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(site)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}"
        relocpy("index", "build", str(signed), "--base-url", url, "--sign", str(tmp / "release.key"))
        relocpy("publish", str(signed), "--to", str(site))
        relocpy("index", "export-uv", url, "--trusted-key", public, "--out", str(work / "uv.json"))
        archives = [p.name for p in signed.glob("cpython-*") if not p.name.endswith(".json")]
        print(f"index: {url}/index.json, signed, {len(archives)} archives; exported for uv")
        subprocess.run(["docker", "import", "-", IMAGE], input=musl_root(tmp, uv_wheel), check=True, capture_output=True)
        listing = in_container("/usr/local/bin/uv", "--version", work=work)
        print(f"container: uv {listing.stdout.strip()}; its root: /lib/ld-musl-x86_64.so.1, /bin/sh (musl stand-in), uv")
        # Installed into the mounted /work: the next container runs what this one installed.
        install = in_container("/usr/local/bin/uv", "python", "install", "3.13", "--python-downloads-json-url",
                               "/work/uv.json", work=work)
        if install.returncode != 0:
            sys.exit(f"uv python install: failed: {(install.stderr or install.stdout).strip()}")
        said = [line for line in install.stderr.splitlines() if "Installed" in line or "cpython-" in line]
        print(f"uv python install: {' / '.join(line.strip() for line in said)}")
        [python] = (work / "pythons").glob("cpython-3.13*/bin/python3")
        inside = "/work/" + str(python.relative_to(work))
        ran = in_container(inside, "-c", PROBE, work=work)
        if ran.returncode != 0:
            sys.exit(f"running {inside}: failed: {ran.stderr.strip()}")
        print(f"ran {inside} (no glibc in the root): {ran.stdout.strip()}")
        server.shutdown()


if __name__ == "__main__":
    main()
