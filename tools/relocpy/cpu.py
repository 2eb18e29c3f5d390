"""CPU micro-architecture levels: which a build targets, which a host runs.

A level is a variant option (recipes/variants.toml: an option with `cpu`), so
an artifact built for one says so in its variant ("pgo+lto+x86_64_v3"). The
installer reads the host CPU's own flags and picks the highest level it runs,
else the baseline build.
"""

from __future__ import annotations

from pathlib import Path

# The x86-64 psABI levels, as the CPU flags Linux shows in /proc/cpuinfo
# (abm is LZCNT; xsave stands for OSXSAVE). Each level includes the ones below.
X86_64_LEVELS: dict[str, frozenset[str]] = {
    "x86_64_v2": frozenset({"cx16", "lahf_lm", "popcnt", "pni", "sse4_1", "sse4_2", "ssse3"}),
    "x86_64_v3": frozenset({"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"}),
    "x86_64_v4": frozenset({"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}),
}
LEVEL_ARCH = {level: "x86_64" for level in X86_64_LEVELS}
# uv's download metadata names a level by its suffix: arch {"family": "x86_64", "variant": "v3"}.
UV_LEVEL_NAMES = {level: level.removeprefix("x86_64_") for level in X86_64_LEVELS}


def host_levels(cpuinfo: Path = Path("/proc/cpuinfo")) -> list[str]:
    """The levels this host's CPU runs, lowest first (none off Linux x86_64)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return []
    flags: set[str] = set()
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "flags":
            flags = set(value.split())
            break
    levels, needed = [], set()
    for level, level_flags in X86_64_LEVELS.items():
        needed |= level_flags
        if not needed <= flags:
            break
        levels.append(level)
    return levels


def split_level(options: str) -> tuple[str, str | None]:
    """'pgo+lto+x86_64_v3' -> ('pgo+lto', 'x86_64_v3'); no level -> (options, None)."""
    parts = options.split("+")
    levels = [part for part in parts if part in LEVEL_ARCH]
    if not levels:
        return options, None
    return "+".join(part for part in parts if part not in LEVEL_ARCH), levels[0]


def level_rank(level: str | None) -> int:
    """0 for a baseline build, then higher for each level."""
    return 0 if level is None else list(X86_64_LEVELS).index(level) + 1
