"""Does compiling the compression libraries at another -O level pay?

    python tools/bench_compression.py [--levels=-O2,-O3] [--rounds 3] [--cache-dir DIR]

Builds zlib, bzip2 and xz (liblzma) as relocpy's dependency steps build them
(the same templates, wrappers and target, natively), once per level, links
tools/bench_compression.c against each set of static libraries with the same
toolchain, runs the programs in turn `--rounds` times and prints MB/s per
codec and direction (the best of all rounds) and each level's ratio to the
first. The level is appended to the toolchain's CFLAGS, after the templates'
own -O2 (clang keeps the last -O). A benchmark prints figures; nothing here
asserts a speed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from relocpy.build import default_source_date_epoch
from relocpy.deps import build_dependencies
from relocpy.fetch import fetch_all
from relocpy.plan import resolve_plan
from relocpy.recipes import load_recipes
from relocpy.runners import get_runner
from relocpy.settings import FetchSettings
from relocpy.steps import StepContext
from relocpy.toolchain import step_env, toolchain_env

REPO = Path(__file__).resolve().parents[1]
HARNESS = REPO / "tools" / "bench_compression.c"
TARGET = "x86_64-unknown-linux-gnu"
LIBRARIES = {"zlib": "-lz", "bzip2": "-lbz2", "xz": "-llzma"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", default="-O2,-O3", help="comma-separated -O levels (default -O2,-O3)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each program, alternating (default 3)")
    parser.add_argument("--repeat", type=int, default=3, help="timings per codec in one run (default 3)")
    parser.add_argument("--cache-dir", type=Path, default=REPO / ".cache" / "bench-compression")
    parser.add_argument("--mirror", default=str(REPO.parent / "shared" / "sources"))
    args = parser.parse_args()
    levels = args.levels.split(",")
    programs = {level: build_program(level, args.cache_dir, args.mirror) for level in levels}
    best: dict[str, dict[str, float]] = {level: {} for level in levels}
    for round_number in range(args.rounds):
        for level in levels[round_number % len(levels):] + levels[:round_number % len(levels)]:
            print(f"round {round_number + 1}/{args.rounds}: {level}", file=sys.stderr, flush=True)
            for codec, speed in run(programs[level], args.repeat).items():
                best[level][codec] = max(speed, best[level].get(codec, 0.0))
    print_table(best, levels)
    return 0


def build_program(level: str, cache: Path, mirror: str) -> Path:
    plan = resolve_plan(load_recipes(), "3.13.15", TARGET, "noopt")
    plan = plan.model_copy(update={"dependencies": [s for s in plan.dependencies if s.dependency.name in LIBRARIES]})
    fetched = fetch_all(plan.all_sources(), FetchSettings(cache_dir=cache, mirrors=[mirror], progress=False))
    toolchain = toolchain_env(plan.target)
    toolchain["CFLAGS"] += f" {level}"
    ctx = StepContext(cache_dir=cache, work_dir=cache / "work" / level, runner=get_runner("native", plan.target),
                      toolchain=toolchain, jobs=2, source_date_epoch=default_source_date_epoch("20261124"))
    built = build_dependencies(plan, {f.component: f for f in fetched}, ctx)
    prefixes = [dep.prefix for dep in built]
    program = cache / f"bench-compression{level}"
    argv = [toolchain["CC"], "-O2", str(HARNESS), "-o", str(program),
            *(f"-I{p}/include" for p in prefixes), *(f"-L{p}/lib" for p in prefixes), *LIBRARIES.values()]
    env = {"PATH": "/usr/bin:/bin", **toolchain, **step_env(toolchain, cache / "work" / level)}
    subprocess.run(argv, env=env, check=True)
    return program


def run(program: Path, repeat: int) -> dict[str, float]:
    output = subprocess.run([str(program), str(repeat)], capture_output=True, text=True, check=True).stdout
    return {" ".join(line.split()[:2]): float(line.split()[2]) for line in output.splitlines()}


def print_table(best: dict[str, dict[str, float]], levels: list[str]) -> None:
    first = levels[0]
    header = f"{'MB/s':<18}" + "".join(f"{level:>10}" for level in levels) + "".join(
        f"{level + '/' + first:>12}" for level in levels[1:])
    print(header + "\n" + "-" * len(header))
    for codec in best[first]:
        row = f"{codec:<18}" + "".join(f"{best[level][codec]:>10.1f}" for level in levels)
        row += "".join(f"{best[level][codec] / best[first][codec]:>11.3f}x" for level in levels[1:])
        print(row)


if __name__ == "__main__":
    sys.exit(main())
