"""How fast an interpreter runs, against reference interpreters, in one run.

    python tools/bench_interp.py debian=/usr/bin/python3.11 ours=/path/to/python/bin/python3 [--rounds 2]

The first interpreter is the reference. Prints, per interpreter against it:

- a pyperformance subset (BENCHMARKS: pure Python, no third-party packages),
  run through pyperf; interpreters alternate benchmark by benchmark and round
  by round, so a machine that gets slower mid-run slows everyone alike;
  the ratio is reference time / its time (above 1: faster), and their
  geometric mean;
- startup: `-I -c pass` and `-I -S -c pass` (pyperf command);
- compression throughput, MB/s of uncompressed data, for zlib, bz2 and lzma
  compressing and decompressing (the bundled libraries, not Python code).

Each interpreter gets a venv under --work with pyperf installed from wheels
fetched once (pip download: PyPI, or pip's configured index). Needs
`pip install 'relocpy[bench]'` (pyperformance, pyperf). A benchmark prints
figures; nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import pyperf
import pyperformance

BENCHMARKS = ["chaos", "deltablue", "float", "go", "json_loads", "nbody", "raytrace", "regex_v8", "richards",
              "spectral_norm"]
STARTUP = {"startup -I": ["-I", "-c", "pass"], "startup -I -S": ["-I", "-S", "-c", "pass"]}
# Run by each interpreter: best of `repeat` timings per codec and direction, on
# 8 MiB of half text, half incompressible bytes (a fixed seed: every
# interpreter compresses the same data).
COMPRESSION_SCRIPT = r"""
import bz2, json, lzma, random, sys, time, zlib
rng = random.Random(1234)
words = [bytes(rng.choice(b"etaoinshrdlucmfw") for _ in range(rng.randint(2, 9))) for _ in range(2000)]
text = b" ".join(rng.choice(words) for _ in range(600_000))[: 4 << 20]
data = text + rng.randbytes(4 << 20)
codecs = {"zlib": (zlib.compress, zlib.decompress), "bz2": (bz2.compress, bz2.decompress),
          "lzma": (lzma.compress, lzma.decompress)}
repeat = int(sys.argv[1])
out = {}
for name, (compress, decompress) in codecs.items():
    packed = compress(data)
    for direction, run, arg in (("compress", compress, data), ("decompress", decompress, packed)):
        times = []
        for _ in range(repeat):
            start = time.perf_counter(); run(arg); times.append(time.perf_counter() - start)
        out[f"{name} {direction}"] = len(data) / min(times) / 1e6
print(json.dumps(out))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("interpreters", nargs="+", metavar="NAME=PYTHON",
                        help="interpreters to compare; the first is the reference")
    parser.add_argument("--rounds", type=int, default=1, help="times each benchmark runs per interpreter (default 1)")
    parser.add_argument("--benchmarks", default=",".join(BENCHMARKS), help="comma-separated pyperformance benchmarks")
    parser.add_argument("--compression-repeat", type=int, default=5, help="timings per codec, best kept (default 5)")
    parser.add_argument("--work", type=Path, help="venvs and results (default: a temporary directory)")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    args = parser.parse_args()
    interpreters = dict(_named(item) for item in args.interpreters)
    if len(interpreters) < 2:
        parser.error("name at least two interpreters: a reference and one to compare")
    with tempfile.TemporaryDirectory(prefix="bench-interp-") as scratch:
        work = args.work or Path(scratch)
        figures = run_all(interpreters, args.benchmarks.split(","), args.rounds, args.compression_repeat, work)
    print_tables(figures, list(interpreters))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


def _named(item: str) -> tuple[str, Path]:
    name, sep, python = item.partition("=")
    if not sep or not name or not Path(python).is_file():
        sys.exit(f"bench_interp: error: expected NAME=PYTHON with an existing PYTHON, not {item!r}")
    return name, Path(python)


def run_all(interpreters: dict[str, Path], benchmarks: list[str], rounds: int, repeat: int, work: Path) -> dict:
    venvs = {name: make_venv(name, python, work) for name, python in interpreters.items()}
    times: dict[str, dict[str, float]] = {name: {} for name in interpreters}
    results = work / "results"
    for round_number in range(rounds):
        for index, bench in enumerate(benchmarks):
            # Rotate who goes first, so no interpreter always runs on a warmer machine.
            order = _rotated(list(interpreters), round_number + index)
            for name in order:
                print(f"round {round_number + 1}/{rounds}: {bench} on {name}", file=sys.stderr, flush=True)
                times[name][bench] = run_benchmark(venvs[name], bench, results / name / f"{bench}.json")
    for label, argv in STARTUP.items():
        for name in interpreters:
            times[name][label] = run_startup(interpreters[name], argv, results / name / f"{label}.json")
    throughput = {name: compression(interpreters[name], repeat) for name in _rotated(list(interpreters), 1)}
    return {"interpreters": {n: str(p) for n, p in interpreters.items()}, "seconds": times, "mb_per_s": throughput}


def _rotated(items: list[str], by: int) -> list[str]:
    by %= len(items)
    return items[by:] + items[:by]


def make_venv(name: str, python: Path, work: Path) -> Path:
    venv = work / "venvs" / name
    if not (venv / "bin" / "python").exists():
        _run([str(python), "-m", "venv", str(venv)])
        _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-index", "--find-links",
              str(_wheels(work)), f"pyperf=={pyperf.__version__}"])
    return venv / "bin" / "python"


def _wheels(work: Path) -> Path:
    wheels = work / "wheels"
    if not wheels.is_dir():
        _run([sys.executable, "-m", "pip", "download", "-q", "-d", str(wheels), f"pyperf=={pyperf.__version__}"])
    return wheels


def run_benchmark(venv_python: Path, bench: str, out: Path) -> float:
    script = Path(pyperformance.__file__).parent / "data-files" / "benchmarks" / f"bm_{bench}" / "run_benchmark.py"
    if not script.is_file():
        sys.exit(f"bench_interp: error: pyperformance {pyperformance.__version__} has no benchmark {bench!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    _run([str(venv_python), str(script), "--fast", "--quiet", "--append", str(out)], cwd=script.parent)
    return _mean(out)


def run_startup(python: Path, argv: list[str], out: Path) -> float:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    _run([sys.executable, "-m", "pyperf", "command", "--quiet", "-o", str(out), "--", str(python), *argv])
    return _mean(out)


def _mean(result: Path) -> float:
    suite = pyperf.BenchmarkSuite.load(str(result))
    return statistics.fmean(bench.mean() for bench in suite.get_benchmarks())


def compression(python: Path, repeat: int) -> dict[str, float]:
    print(f"compression throughput on {python}", file=sys.stderr, flush=True)
    return json.loads(_run([str(python), "-I", "-c", COMPRESSION_SCRIPT, str(repeat)]))


def _run(argv: list[str], cwd: Path | None = None) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, cwd=cwd)
    if done.returncode != 0:
        sys.exit(f"bench_interp: error: {' '.join(argv[:3])}... failed:\n{done.stderr[-2000:]}")
    return done.stdout


def print_tables(figures: dict, names: list[str]) -> None:
    reference, others = names[0], names[1:]
    seconds, throughput = figures["seconds"], figures["mb_per_s"]
    print(f"reference: {reference} = {figures['interpreters'][reference]}")
    for name in others:
        print(f"{name} = {figures['interpreters'][name]}")
    header = f"{'benchmark':<16}{reference + ' (ms)':>16}" + "".join(f"{n + ' (ms)':>16}{'speed-up':>10}" for n in others)
    print("\n" + header + "\n" + "-" * len(header))
    for bench in seconds[reference]:
        row = f"{bench:<16}{seconds[reference][bench] * 1e3:>16.2f}"
        for name in others:
            row += f"{seconds[name][bench] * 1e3:>16.2f}{seconds[reference][bench] / seconds[name][bench]:>9.3f}x"
        print(row)
    pyperformance_rows = [b for b in seconds[reference] if b not in STARTUP]
    footer = f"{'geometric mean':<16}{'':>16}"
    for name in others:
        ratios = [seconds[reference][b] / seconds[name][b] for b in pyperformance_rows]
        footer += f"{'':>16}{math.exp(statistics.fmean(map(math.log, ratios))):>9.3f}x"
    print(footer + "   (benchmarks only; above 1: faster than the reference)")
    header = f"\n{'MB/s':<16}{reference:>16}" + "".join(f"{n:>16}{'ratio':>10}" for n in others)
    print(header + "\n" + "-" * (len(header) - 1))
    for codec in throughput[reference]:
        row = f"{codec:<16}{throughput[reference][codec]:>16.1f}"
        for name in others:
            row += f"{throughput[name][codec]:>16.1f}{throughput[name][codec] / throughput[reference][codec]:>9.3f}x"
        print(row)


if __name__ == "__main__":
    sys.exit(main())
