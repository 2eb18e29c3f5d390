#!/usr/bin/env python3
"""Build and validate every buildable Linux target from this host, one after
the other, and print one row per target: build time, the stripped archive's
size, the platform tag computed from its files, how validation ran it, and
the result (the error line when it failed).

    python tools/verify_targets.py [--python 3.13.15] [--variant noopt] [--targets T1,T2]
                                   [--cache-dir DIR] [--mirror DIR] [--runner native] [--keep DIR]

A cold run builds each target's dependencies and, for cross targets, the
build machine's interpreter (shared by all of them through the cache); run it
twice to see warm times. The variant defaults to noopt (the quickest build
that exercises every stage); pass `--variant default` for each target's own
default variant.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from relocpy.models import ArtifactMetadata
from relocpy.recipes import buildable_cells, default_variant, load_recipes

ROOT = Path(__file__).resolve().parents[1]


def build(args, target: str, variant: str, dist: Path) -> tuple[float, str]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "relocpy", "build", "--python", args.python, "--target", target, "--variant", variant,
         "--runner", args.runner, "--dist", str(dist), "--build-tag", args.build_tag, "--mirror", args.mirror,
         "--cache-dir", args.cache_dir, "--offline"],
        capture_output=True, text=True)
    error = "" if done.returncode == 0 else (done.stderr.strip().splitlines() or ["exit %d" % done.returncode])[-1]
    return time.monotonic() - started, error


def row(target: str, variant: str, seconds: float, error: str, dist: Path) -> list[str]:
    metas = [ArtifactMetadata.model_validate_json(p.read_text()) for p in dist.glob("*-install_only_stripped.*.json")]
    if error or not metas:
        return [target, variant, f"{seconds:.0f}", "-", "-", "-", "FAILED: " + (error or "no archive")[:140]]
    meta = metas[0]
    run = meta.validation.platform.run
    how = {"emulator": f"qemu ({run.emulator})", "loader": "musl loader", "host": "native"}.get(run.how, run.how)
    return [target, variant, f"{seconds:.0f}", f"{meta.size / 1e6:.1f}", meta.platform_tag, how, "passed"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default="3.13.15")
    parser.add_argument("--variant", default="noopt", help="a variant, or 'default' for each target's own")
    parser.add_argument("--targets", default="", help="comma-separated triples (default: every buildable Linux target)")
    parser.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "relocpy"))
    parser.add_argument("--mirror", default=str(ROOT.parent / "shared" / "sources"))
    parser.add_argument("--runner", default="native", choices=["native", "docker"])
    parser.add_argument("--build-tag", default="verify",
                        help="the builds' tag: its date is SOURCE_DATE_EPOCH, which every step's key holds, so only "
                             "builds of one tag share cached steps (the test suite's: 20261124)")
    parser.add_argument("--keep", metavar="DIR", help="keep each target's dist in DIR/<target> (default: discarded)")
    args = parser.parse_args()
    recipes = load_recipes()
    buildable = sorted({c.target for c in buildable_cells(recipes) if recipes.targets[c.target].os == "linux"})
    targets = args.targets.split(",") if args.targets else buildable
    header = ["target", "variant", "build (s)", "stripped (MB)", "platform tag", "validated by", "result"]
    rows = []
    for target in targets:
        variant = default_variant(recipes, recipes.targets[target]) if args.variant == "default" else args.variant
        print(f"building {target} ({variant})...", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(prefix="relocpy-verify-") as tmp:
            dist = Path(args.keep) / target if args.keep else Path(tmp)
            dist.mkdir(parents=True, exist_ok=True)
            seconds, error = build(args, target, variant, dist)
            rows.append(row(target, variant, seconds, error, dist))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for line in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())
    sys.exit(1 if any(r[-1] != "passed" for r in rows) else 0)


if __name__ == "__main__":
    main()
