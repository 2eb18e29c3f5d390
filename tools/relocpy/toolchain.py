"""The compiler environment a target's build scripts run with."""

from __future__ import annotations

import hashlib
import importlib.metadata
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from relocpy.errors import RecipeError
from relocpy.extras import require
from relocpy.models import Target
from relocpy.paths import templates_dir

# Per toolchain: the programs autotools and make should use.
PROGRAMS = {
    "gcc": {"CC": "gcc", "CXX": "g++", "AR": "ar", "RANLIB": "ranlib"},
    "clang": {"CC": "clang", "CXX": "clang++", "AR": "ar", "RANLIB": "ranlib"},
    "zig": {"CC": "zig-cc", "CXX": "zig-c++", "AR": "zig-ar", "RANLIB": "zig-ranlib"},
}
# The LLVM that zig 0.17 is built on: host LLVM tools that read or rewrite
# what zig produced must be this version.
ZIG_LLVM_MAJOR = 22
# Per toolchain: the strip that understands its linker's output, and where a
# Debian host gets it. GNU strip (binutils 2.40) rewrites files linked by
# zig's lld so that their symbol-version sections point at garbage and the
# interpreter does not start; llvm-strip does not.
STRIP_PROGRAMS = {
    "gcc": (["strip", "--strip-debug", "--enable-deterministic-archives"], "binutils"),
    "clang": (["llvm-strip", "--strip-debug"], "llvm"),
    "zig": ([f"llvm-strip-{ZIG_LLVM_MAJOR}", "--strip-debug"], f"llvm-{ZIG_LLVM_MAJOR}"),
}
# zig 0.17 turns -Wdate-time into an error at any -O level; CPython's
# getbuildinfo.c uses __DATE__, kept reproducible by SOURCE_DATE_EPOCH.
ZIG_CFLAGS = ["-Wno-error=date-time"]


class ToolchainError(RecipeError):
    pass


def toolchain_env(target: Target, cpu_level: str | None = None) -> dict[str, str]:
    """What build caches key on: programs, flags and (for zig) its target and
    version; a CPU level (cpu.py) compiles everything for that level."""
    programs = PROGRAMS.get(target.toolchain)
    if programs is None:
        raise ToolchainError(f"targets.toml: [{target.triple}].toolchain: '{target.toolchain}' is not supported by this host's runners")
    cflags = list(target.cflags)
    extra: dict[str, str] = {}
    if target.toolchain == "zig":
        programs = {var: str(wrappers_dir() / program) for var, program in programs.items()}
        cflags += ZIG_CFLAGS
        extra = {"RELOCPY_ZIG_TARGET": zig_target(target), "RELOCPY_ZIG": str(zig_dir() / "zig"),
                 "RELOCPY_ZIG_VERSION": importlib.metadata.version("ziglang"),
                 "RELOCPY_ZIG_WRAPPERS": wrappers_digest()}
        if cpu_level:
            # Through the wrappers, not CFLAGS: CPython records CFLAGS for the
            # C extensions users build, which must not need zig or that CPU.
            extra["RELOCPY_ZIG_CPU"] = cpu_level
    elif cpu_level:
        cflags.append("-march=" + cpu_level.replace("_", "-"))  # x86_64_v3 -> x86-64-v3
    return {**programs, "CFLAGS": " ".join(cflags), "LDFLAGS": " ".join(target.ldflags), **extra}


@dataclass(frozen=True)
class StripTool:
    argv: tuple[str, ...]  # the command, to be followed by the file to strip
    identity: str  # program and version: part of the packaged archives' cache key


def strip_tool(target: Target) -> StripTool:
    """The strip command for the target's toolchain, found on this host."""
    argv, package = STRIP_PROGRAMS[target.toolchain]
    program = shutil.which(argv[0])
    if program is None:
        raise ToolchainError(
            f"the {target.toolchain} toolchain strips with {argv[0]}, which is not on PATH "
            f"(Debian: apt-get install {package})"
        )
    output = subprocess.run([program, "--version"], capture_output=True, text=True, check=False).stdout
    version = next((line.strip() for line in output.splitlines() if "version" in line.lower()), "unknown version")
    return StripTool(argv=(program, *argv[1:]), identity=f"{argv[0]} {version}")


def toolchain_places(toolchain: dict[str, str]) -> dict[str, str]:
    """Where this checkout's wrappers and the zig package happen to live, and
    the names cache keys know them by (their content is keyed by digest and
    version, in the toolchain's variables)."""
    places = {str(wrappers_dir()): "<wrappers>"}
    if "RELOCPY_ZIG" in toolchain:
        places[str(zig_dir())] = "<zig>"
    return places


def toolchain_mounts(target: Target) -> list[Path]:
    """Host directories a container step must see (read-only) to run the toolchain."""
    return [wrappers_dir(), zig_dir()] if target.toolchain == "zig" else []


def zig_cache(toolchain: dict[str, str], build_work: Path) -> Path | None:
    """zig's cache for every step of one build: in the build's work directory,
    so a build never reuses objects of another one (zig caches by its inputs,
    not by SOURCE_DATE_EPOCH), while its steps share the C runtime,
    compiler_rt and libc++ zig builds on first use: each step building them
    again cost about 10 s, and a C++ configure check about 50 s more (libffi,
    expat). The first step to link makes them (build/zig-warm-up.sh.j2).
    None: not a zig toolchain."""
    return build_work / "zig-cache" if "RELOCPY_ZIG_TARGET" in toolchain else None


def step_env(toolchain: dict[str, str], build_work: Path) -> dict[str, str]:
    """Per-step additions: where zig's cache is (zig_cache)."""
    cache = zig_cache(toolchain, build_work)
    return {"ZIG_GLOBAL_CACHE_DIR": str(cache), "ZIG_LOCAL_CACHE_DIR": str(cache)} if cache else {}


def zig_target(target: Target) -> str:
    """zig's triple names the libc and, for glibc, the version to link against."""
    if target.libc not in ("glibc", "musl"):
        raise ToolchainError(f"targets.toml: [{target.triple}]: the zig toolchain builds Linux targets only")
    return zig_triple(target.arch, target.libc, target.floor)


def zig_triple(arch: str, libc: str, floor: str) -> str:
    """zig's triple for a Linux arch and libc at a floor (a target's or a policy's)."""
    return f"{arch}-linux-gnu.{floor}" if libc == "glibc" else f"{arch}-linux-{libc}"


def configure_host(target: Target) -> str:
    """What an autotools configure takes after --prefix: nothing natively; for
    a cross build, the build machine's and the target's triples (configure then
    runs no program it compiled)."""
    return f" --build={target.build_on} --host={target.triple}" if target.cross else ""


def links_against_floor(target: Target) -> bool:
    """Whether the toolchain links against the target's floor (not the build host's libc)."""
    return target.toolchain == "zig"


def wrappers_dir() -> Path:
    return templates_dir() / "toolchain"


def wrappers_digest() -> str:
    """The wrappers' content, so that editing one rebuilds what it compiled."""
    digest = hashlib.sha256()
    for path in sorted(wrappers_dir().iterdir()):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def zig_dir() -> Path:
    """The ziglang package: a static zig binary and its lib/ (libc headers and stubs)."""
    return Path(require("build", "ziglang").__file__).parent
