#!/usr/bin/env python3
"""Build and validate every buildable Linux target from this host, one after
the other, and print one row per target: build time, the stripped archive's
size, the platform tag computed from its files, how validation ran it, and
the result (the error line when it failed).

    python tools/verify_targets.py [--python 3.13.15] [--variant noopt] [--targets T1,T2]
                                   [--cache-dir DIR] [--mirror DIR] [--runner native] [--keep DIR]
                                   [--build-tag TAG] [--installer]

With --installer, every passed build then enters one signed index (served on
loopback), and each target's own interpreter (under qemu, or through the musl
loader) runs `relocpy install` from it in a venv holding relocpy's consumer
dependencies as that platform's wheels: the column says which platform's
artifact it picked, which must be its own.

A cold run builds each target's dependencies and, for cross targets, the
build machine's interpreter (shared by all of them through the cache); run it
twice to see warm times. The variant defaults to noopt (the quickest build
that exercises every stage); pass `--variant default` for each target's own
default variant.
"""

from __future__ import annotations

import argparse
import functools
import subprocess
import sys
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from relocpy.models import ArtifactMetadata
from relocpy.recipes import buildable_cells, default_variant, load_recipes

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the emulated consumer the cross end-to-end test uses too


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


def relocpy(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "relocpy", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"relocpy {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def installer_picks(dists: dict[str, tuple[Path, str]], python: str, scratch: Path) -> dict[str, str]:
    """target -> the platform tag `relocpy install`, run by that target's own
    interpreter, installed from one index of every target's build."""
    from emulated_consumer import consumer_venv, install_with, installed_platform

    together, site = scratch / "dist", scratch / "site"
    together.mkdir(parents=True)
    site.mkdir()
    for dist, _ in dists.values():
        for path in dist.glob("cpython-*"):
            (together / path.name).symlink_to(path)
    key = scratch / "index.key"
    public = relocpy("keys", "generate", "--out", str(key)).strip()
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(SimpleHTTPRequestHandler, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    relocpy("index", "build", str(together), "--base-url", url, "--sign", str(key))
    relocpy("publish", str(together), "--to", str(site))
    picked = {}
    minor = ".".join(python.split(".")[:2])
    for target, (dist, variant) in dists.items():
        [archive] = dist.glob("*-install_only.tar.gz")
        python_, env = consumer_venv(archive, scratch / target)
        done = install_with(python_, env, minor, variant, url + "/index.json", public, scratch / target / "versions")
        picked[target] = installed_platform(scratch / target / "versions") if done.returncode == 0 else (
            "FAILED: " + (done.stderr.strip().splitlines() or ["?"])[-1][:100])
    server.shutdown()
    return picked


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
    parser.add_argument("--installer", action="store_true",
                        help="then have each target's interpreter pick from one index of them all (relocpy install)")
    parser.add_argument("--keep", metavar="DIR", help="keep each target's dist in DIR/<target> (default: discarded)")
    args = parser.parse_args()
    recipes = load_recipes()
    buildable = sorted({c.target for c in buildable_cells(recipes) if recipes.targets[c.target].os == "linux"})
    targets = args.targets.split(",") if args.targets else buildable
    header = ["target", "variant", "build (s)", "stripped (MB)", "platform tag", "validated by", "result"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="relocpy-verify-") as tmp:
        dists = {}
        for target in targets:
            variant = default_variant(recipes, recipes.targets[target]) if args.variant == "default" else args.variant
            print(f"building {target} ({variant})...", file=sys.stderr, flush=True)
            dist = Path(args.keep) / target if args.keep else Path(tmp) / target
            dist.mkdir(parents=True, exist_ok=True)
            seconds, error = build(args, target, variant, dist)
            rows.append(row(target, variant, seconds, error, dist))
            if rows[-1][-1] == "passed":
                dists[target] = (dist, variant)
        if args.installer:
            header.insert(-1, "installer picks")
            print("installing with each target's interpreter...", file=sys.stderr, flush=True)
            picked = installer_picks(dists, args.python, Path(tmp) / "installer")
            for r in rows:
                r.insert(-1, picked.get(r[0], "-"))
                if r[-1] == "passed" and picked.get(r[0]) != r[4]:
                    r[-1] = "installer picked another platform"
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for line in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())
    sys.exit(1 if any(r[-1] != "passed" for r in rows) else 0)


if __name__ == "__main__":
    main()
