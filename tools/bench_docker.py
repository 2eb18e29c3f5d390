#!/usr/bin/env python3
"""Docker vs native benchmark: builds the same CPython variant with each runner
and prints the CPython step's time (dependencies warm in each runner's cache),
the whole build's time, and the highest GLIBC version every ELF file needs.

    python tools/bench_docker.py [--python 3.13.15] [--variant noopt] [--mirror DIR] [--cache-dir DIR]

A fresh SOURCE_DATE_EPOCH per run changes CPython's cache key but not the
dependencies' keys, so each timed run recompiles CPython and reuses (or, the
first time, builds) the dependencies. Run it once before trusting the figures.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from relocpy import elf  # noqa: E402
from relocpy.artifacts import unpack  # noqa: E402

TARGET = "x86_64-unknown-linux-gnu"
STEP_TIME = re.compile(r"build CPython [^:]*: done in ([0-9.]+)s")


def build(args, runner: str, dist: Path) -> tuple[float, float]:
    """(CPython step seconds, whole build seconds) for one runner."""
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(int(time.time()))}
    argv = [sys.executable, "-m", "relocpy", "build", "--python", args.python, "--target", TARGET,
            "--variant", args.variant, "--runner", runner, "--dist", str(dist), "--build-tag", "bench",
            "--mirror", args.mirror, "--cache-dir", args.cache_dir, "--offline"]
    started = time.monotonic()
    result = subprocess.run(argv, env=env, capture_output=True, text=True)
    total = time.monotonic() - started
    if result.returncode != 0:
        sys.exit(f"bench: {runner} build failed: {result.stderr.strip().splitlines()[-1]}")
    match = STEP_TIME.search(result.stderr)
    return (float(match.group(1)) if match else float("nan")), total


def glibc_by_file(dist: Path) -> dict[str, str]:
    [archive] = dist.glob("cpython-*-install_only.tar.gz")
    with tempfile.TemporaryDirectory() as tmp:
        unpack(archive, Path(tmp))
        return elf.check_tree(Path(tmp) / "python", []).glibc_by_file


def report_glibc(runner: str, versions: dict[str, str]) -> None:
    print(f"\nhighest GLIBC symbol version per ELF file ({runner}; {len(versions)} files reference glibc):")
    for name, version in sorted(versions.items()):
        print(f"  GLIBC_{version:<6} {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default="3.13.15")
    parser.add_argument("--variant", default="noopt")
    parser.add_argument("--mirror", default=str(ROOT.parent / "shared" / "sources"))
    parser.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "relocpy-bench"))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="relocpy-bench-") as tmp:
        for runner in ("native", "docker"):
            dist = Path(tmp) / runner
            step, total = build(args, runner, dist)
            rows.append((runner, step, total))
            report_glibc(runner, glibc_by_file(dist))
    print(f"\n{args.python} {args.variant}, {TARGET}:")
    print(f"  {'runner':<8} {'CPython step':>13} {'whole build':>12}")
    for runner, step, total in rows:
        print(f"  {runner:<8} {step:>12.1f}s {total:>11.1f}s")
    print(f"  docker/native (CPython step): {rows[1][1] / rows[0][1]:.2f}x")


if __name__ == "__main__":
    main()
