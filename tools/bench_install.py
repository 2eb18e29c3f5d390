"""Time `relocpy install` against `uv python install` of the same artifact.

Both fetch one ~20-25 MB archive (the host's CPython prefix, packed as the
tests pack it) from an HTTP server on loopback, with cold caches: relocpy from
its signed index, uv through `relocpy index export-uv`. Prints one line per
tool: median, min and max wall time over --runs.

    python tools/bench_install.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the tests' artifact builder and loopback server

from support import HOST_VERSION, LoopbackServer, artifact_key, pack_host_python, write_metadata  # noqa: E402

BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if not found:
        sys.exit(f"bench_install: {name} not found next to {sys.executable} or on PATH")
    return found


def call(argv: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"bench_install: {' '.join(argv[:3])} failed:\n{done.stderr}")
    return done.stdout


def timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    call(argv, env)
    return time.perf_counter() - started


def prepare(work: Path, env: dict[str, str]) -> tuple[Path, str]:
    dist = work / "dist"
    dist.mkdir()
    archive = dist / artifact_key().filename
    pack_host_python(archive)
    write_metadata(archive, artifact_key())
    public = call([tool("relocpy"), "keys", "generate", "--out", str(work / "bench.key")], env).strip()
    return dist, public


def run_relocpy(work: Path, env: dict[str, str], url: str, public: str, i: int) -> float:
    fresh = {**env, "XDG_CACHE_HOME": str(work / f"r-cache-{i}"), "XDG_DATA_HOME": str(work / f"r-data-{i}")}
    return timed([tool("relocpy"), "install", HOST_VERSION, "--index", url, "--trusted-key", public,
                  "--install-dir", str(work / f"r-versions-{i}")], fresh)


def run_uv(work: Path, env: dict[str, str], downloads: Path, i: int) -> float:
    fresh = {**env, "UV_PYTHON_INSTALL_DIR": str(work / f"uv-py-{i}"), "UV_CACHE_DIR": str(work / f"uv-cache-{i}"),
             "UV_PYTHON_BIN_DIR": str(work / f"uv-bin-{i}"), "UV_NO_CONFIG": "1"}
    return timed([tool("uv"), "python", "install", HOST_VERSION, "--python-downloads-json-url", str(downloads)], fresh)


def summary(label: str, times: list[float]) -> str:
    return (f"{label:<26} median {statistics.median(times):6.3f}s  min {min(times):6.3f}s  "
            f"max {max(times):6.3f}s  ({len(times)} runs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="relocpy-bench-") as tmp:
        work = Path(tmp)
        env = {**os.environ, "XDG_DATA_HOME": str(work / "data"), "XDG_CONFIG_HOME": str(work / "config")}
        dist, public = prepare(work, env)
        archive = dist / artifact_key().filename
        size = archive.stat().st_size
        with LoopbackServer(dist) as server:
            call([tool("relocpy"), "index", "build", str(dist), "--base-url", server.url, "--sign", str(work / "bench.key")], env)
            downloads = work / "uv-downloads.json"
            call([tool("relocpy"), "index", "export-uv", server.url, "--trusted-key", public, "--out", str(downloads)], env)
            ours, theirs = [], []
            for i in range(args.runs):  # interleaved, so both see the same load on a shared machine
                ours.append(run_relocpy(work, env, server.url, public, i))
                theirs.append(run_uv(work, env, downloads, i))
    print(f"artifact: {archive.name}, {size / 1e6:.1f} MB, served from loopback, cold caches")
    print(summary("relocpy install", ours))
    print(summary("uv python install", theirs))


if __name__ == "__main__":
    main()
