#!/usr/bin/env python3
"""Build benchmark: prints cold, warm and no-op build times, a bare
`./configure && make -jN` of the same CPython for comparison, archive sizes,
and whether two builds of the same inputs gave byte-identical archives.

    python tools/bench_build.py [--python 3.13.15] [--variant noopt] [--mirror DIR] [--skip-cold]

Targets: warm rebuild <= 1.1x the bare build; no-op rebuild < 10 s;
install_only_stripped for 3.13 < 25 MB.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from relocpy.artifacts import archives_in

ROOT = Path(__file__).resolve().parents[1]
TARGET = "x86_64-unknown-linux-gnu"


def timed(argv: list[str], **kwargs) -> float:
    started = time.monotonic()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kwargs)
    return time.monotonic() - started


def build(args, cache: Path, dist: Path) -> float:
    return timed([sys.executable, "-m", "relocpy", "build", "--python", args.python, "--target", TARGET,
                  "--variant", args.variant, "--runner", "native", "--dist", str(dist), "--build-tag", "bench",
                  "--mirror", args.mirror, "--cache-dir", str(cache), "--offline", "--jobs", str(args.jobs)])


def bare_build(args, work: Path) -> float:
    """What a user compiling CPython by hand would run (no dependencies built)."""
    source = next(Path(args.mirror).glob(f"Python-{args.python}.t*"))
    subprocess.run(["tar", "-xf", source, "-C", work], check=True)
    tree = work / f"Python-{args.python}"
    started = time.monotonic()
    subprocess.run(["./configure"], cwd=tree, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run(["make", f"-j{args.jobs}"], cwd=tree, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - started


def digests(dist: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in archives_in(dist)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default="3.13.15")
    parser.add_argument("--variant", default="noopt")
    parser.add_argument("--mirror", default=str(ROOT.parent / "shared" / "sources"))
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--cache-dir", help="reuse this cache (implies --skip-cold unless empty)")
    parser.add_argument("--skip-cold", action="store_true", help="do not time a build from an empty cache")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="relocpy-bench-") as tmp:
        tmp = Path(tmp)
        cache = Path(args.cache_dir) if args.cache_dir else tmp / "cache"
        rows = []
        first = tmp / "dist-first"
        if not args.skip_cold:
            shutil.rmtree(cache / "deps", ignore_errors=True)
            shutil.rmtree(cache / "cpython", ignore_errors=True)
            shutil.rmtree(cache / "artifacts", ignore_errors=True)
            rows.append(("cold build (dependencies + CPython)", build(args, cache, first)))
        else:
            build(args, cache, first)
        # Warm: dependencies cached, CPython compiled again from scratch.
        shutil.rmtree(cache / "cpython", ignore_errors=True)
        shutil.rmtree(cache / "artifacts", ignore_errors=True)
        second = tmp / "dist-warm"
        warm = build(args, cache, second)
        rows.append(("warm rebuild (dependencies cached)", warm))
        rows.append(("no-op rebuild", build(args, cache, tmp / "dist-noop")))
        bare = bare_build(args, tmp / "bare")
        rows.append((f"bare ./configure && make -j{args.jobs}", bare))

        print(f"CPython {args.python} ({args.variant}) for {TARGET}, {args.jobs} jobs")
        for label, seconds in rows:
            print(f"  {label:<42} {seconds:8.1f} s")
        print(f"  {'warm / bare':<42} {warm / bare:8.2f} x   (target <= 1.10)")
        print("archive sizes:")
        for path in archives_in(second):
            print(f"  {path.name:<80} {path.stat().st_size / 1e6:7.1f} MB")
        same = digests(first) == digests(second)
        print(f"two builds of the same inputs byte-identical: {'yes' if same else 'no'}")
        if not same:
            for name, digest in digests(first).items():
                print(f"  {name}: {'same' if digests(second).get(name) == digest else 'differs'}")


if __name__ == "__main__":
    main()
