"""Build one plan twice, each from an empty cache in its own directory, and
compare the archives byte for byte. Prints a table of the sha256 of each
flavor; exits 1 if any differs, after naming the files inside that differ.

    python3 tools/check_reproducible.py --python 3.13.15 --variant noopt

Takes two cold builds' time (about 15 minutes each for noopt on 2 cores, more
for lto). The work directory is kept when something differs.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from relocpy.artifacts import archives_in, open_archive
from relocpy.models import ArtifactKey


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default="3.13.15")
    parser.add_argument("--target", default="x86_64-unknown-linux-gnu")
    parser.add_argument("--variant", help="default: the recipes' default variant")
    parser.add_argument("--build-tag", default="20261124")
    parser.add_argument("--mirror", action="append", default=[], help="passed to relocpy build (also RELOCPY_MIRRORS)")
    parser.add_argument("--work", type=Path, help="where the two builds go (default: a new temporary directory)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="relocpy-reproducible-"))
    dists = [build(args, work / name) for name in ("first", "second-build")]
    same = report(dists)
    if same:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"\nkept for a look: {work}")
    return 0 if same else 1


def build(args, root: Path) -> Path:
    """A cold build: its own empty cache, its own dist, in its own directory."""
    dist = root / "dist"
    argv = [sys.executable, "-m", "relocpy", "build", "--python", args.python, "--target", args.target,
            "--build-tag", args.build_tag, "--cache-dir", str(root / "cache"), "--dist", str(dist)]
    argv += ["--variant", args.variant] if args.variant else []
    argv += [arg for mirror in args.mirror for arg in ("--mirror", mirror)]
    started = time.monotonic()
    print(f"building in {root} ...", flush=True)
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"the build in {root} failed:\n{done.stderr[-3000:]}")
    print(f"  done in {(time.monotonic() - started) / 60:.1f} min", flush=True)
    return dist


def report(dists: list[Path]) -> bool:
    first, second = ({ArtifactKey.parse(p.name).flavor: p for p in archives_in(d)} for d in dists)
    print(f"\n{'flavor':<24} {'size':>10}  {'sha256 (first build)':<64}  same in second build")
    same = True
    for flavor, archive in sorted(first.items()):
        digest = sha256(archive.read_bytes())
        other = second.get(flavor)
        identical = other is not None and sha256(other.read_bytes()) == digest
        same &= identical
        print(f"{flavor:<24} {archive.stat().st_size:>10}  {digest}  {'yes' if identical else 'NO'}")
        if other is not None and not identical:
            for name in differing_members(archive, other)[:20]:
                print(f"    differs: {name}")
    return same and first.keys() == second.keys()


def differing_members(a: Path, b: Path) -> list[str]:
    left, right = members(a), members(b)
    return sorted(name for name in left.keys() | right.keys() if left.get(name) != right.get(name))


def members(archive: Path) -> dict[str, str]:
    found = {}
    with open_archive(archive) as tar:
        for member in tar:
            data = tar.extractfile(member).read() if member.isfile() else member.linkname.encode()
            found[member.name] = sha256(data)
    return found


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


if __name__ == "__main__":
    sys.exit(main())
