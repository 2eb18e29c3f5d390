"""Make an installed CPython tree work wherever it is unpacked.

- ELF: the interpreter and libpython3.so find libpython through $ORIGIN; the
  install prefix compiled into getpath (its fallback when no standard library
  is found beside the executable) becomes a path that cannot exist.
- Scripts in bin/: a /bin/sh trampoline that runs the interpreter beside them.
- sysconfig data, the config Makefile, python-config and pkg-config files:
  every path is computed from where the file is at run time; flags naming the
  build machine's dependency prefix are dropped.
- No bytecode compiled on the build machine.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
from pathlib import Path

from relocpy import shell
from relocpy.cpython import INSTALL_PREFIX, BuiltPython
from relocpy.deps import BuiltDependency
from relocpy.toolchain import wrappers_dir

# Stands for the installation prefix in relocated sysconfig data; the
# sysconfig patch of each CPython version replaces it at run time.
PREFIX_TOKEN = "@RELOCPY_PREFIX@"
MAKEFILE_PREFIX = "prefix := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))../../..)"
# What getpath falls back to instead of the install prefix: nothing can be
# created under /dev/null, so no one can plant a standard library there.
UNREACHABLE_PREFIX = "/dev/null/relocpy-no-prefix"

# The zig wrappers (build/toolchain) and what a user's machine calls them.
TOOLCHAIN_PROGRAMS = {
    "zig-cc": "cc", "zig-clang": "cc", "zig-c++": "c++", "zig-clang++": "c++", "zig-ar": "ar", "zig-ranlib": "ranlib",
}


def relocate(built: BuiltPython, staging: Path, deps: list[BuiltDependency], work_dir: Path | None = None) -> Path:
    """Copy the installed tree to staging/python and relocate it there."""
    tree = staging / "python"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    shutil.copytree(built.tree, tree, symlinks=True)
    build_paths = build_machine_paths(built, deps, work_dir)
    set_rpaths(tree)
    replace_compiled_prefix(tree)
    install_trampolines(tree)
    relocate_sysconfigdata(tree, build_paths)
    relocate_makefile(tree, build_paths)
    relocate_python_config(tree, build_paths)
    relocate_pkgconfig(tree)
    remove_bytecode(tree)
    return tree


def build_machine_paths(built: BuiltPython, deps: list[BuiltDependency], work_dir: Path | None) -> list[str]:
    """Directories of the build machine that must not survive relocation, longest first."""
    paths = {str(built.destdir)}
    if built.build_python is not None:
        paths.add(str(built.build_python.destdir))
    if built.step.made_in is not None:
        # where the CPython step ran ($WORK, $DEPS), which the build that made
        # the cache entry chose: maybe not this one
        paths.add(str(built.step.made_in))
    paths |= {str(d.prefix) for d in deps}
    if work_dir:
        paths.add(str(work_dir))
    return sorted(paths, key=len, reverse=True)


# --- ELF -------------------------------------------------------------------------


def set_rpaths(tree: Path) -> None:
    lib = tree / "lib"
    for exe in sorted((tree / "bin").glob("python3*")):
        if exe.is_file() and not exe.is_symlink() and _is_elf(exe):
            _patchelf(exe, "$ORIGIN/../lib")
    stable_abi = lib / "libpython3.so"
    if stable_abi.is_file():
        _patchelf(stable_abi, "$ORIGIN")


def replace_compiled_prefix(tree: Path) -> None:
    """The install prefix as a C string (getpath's PREFIX and EXEC_PREFIX, in
    the interpreter and both libpythons) becomes UNREACHABLE_PREFIX, padded
    with NULs to the same length: nothing else in the file moves. The prefix
    anywhere else is left for the validator to refuse."""
    literal = INSTALL_PREFIX.encode() + b"\0"
    replacement = UNREACHABLE_PREFIX.encode().ljust(len(literal), b"\0")
    assert len(replacement) == len(literal)
    for path in sorted(tree.rglob("*")):
        if path.is_symlink() or not path.is_file() or not (path.suffix == ".a" or _is_elf(path)):
            continue
        data = path.read_bytes()
        if literal in data:
            path.write_bytes(data.replace(literal, replacement))


def _patchelf(path: Path, rpath: str) -> None:
    # DT_RPATH rather than DT_RUNPATH: it also applies to libraries loaded by
    # what this file loads, so extensions linked to libpython find it too.
    shell.capture(["patchelf", "--force-rpath", "--set-rpath", rpath, str(path)])


def _is_elf(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(4) == b"\x7fELF"


# --- scripts -----------------------------------------------------------------------


def trampoline(interpreter: str) -> str:
    """A header that is valid sh (exec the interpreter, given relative to the
    script's real directory) and a Python no-op (a string literal); it
    replaces an absolute shebang."""
    return (
        "#!/bin/sh\n"
        f"'''exec' \"$(dirname -- \"$(realpath -- \"$0\")\")/{interpreter}\" \"$0\" \"$@\"\n"
        "' '''\n"
    )


def install_trampolines(tree: Path) -> None:
    """Every script in the tree whose shebang names the build prefix (bin/,
    and python-config.py in the config directory)."""
    interpreter = tree / "bin" / _interpreter_name(tree)
    for script in sorted(tree.rglob("*")):
        if script.is_symlink() or not script.is_file() or _is_elf(script):
            continue
        with script.open("rb") as handle:
            first = handle.readline()
        if first.startswith(b"#!") and b"python" in first and INSTALL_PREFIX.encode() in first:
            relative = os.path.relpath(interpreter, script.parent)
            rest = script.read_bytes()[len(first):]
            script.write_bytes(trampoline(relative).encode() + rest)


def _interpreter_name(tree: Path) -> str:
    candidates = sorted(
        p.name for p in (tree / "bin").glob("python3.*") if re.fullmatch(r"python3\.\d+[td]*", p.name)
    )
    return candidates[0]


# --- sysconfig -------------------------------------------------------------------------


def scrub_flags(value: str, build_paths: list[str]) -> str:
    """Drop -I/-L/-rpath flags that point into the build machine's directories."""
    if not any(path in value for path in build_paths):
        return value
    try:
        words = shlex.split(value)
    except ValueError:
        return value
    kept = [w for w in words if not (_is_path_flag(w) and any(p in w for p in build_paths))]
    return " ".join(kept)


def _is_path_flag(word: str) -> bool:
    return word.startswith(("-I", "-L", "-Wl,-rpath", "-isystem", "--with-openssl=", "PKG_CONFIG"))


def generic_programs(value: str) -> str:
    """The build machine's compiler wrappers become the names a user's machine
    has (`cc`, `c++`, ...), so C extensions build with the user's compiler."""
    # Any checkout's wrappers, not only this one's: a cached CPython tree is
    # keyed independently of where the checkout was that built it.
    for program, generic in TOOLCHAIN_PROGRAMS.items():
        value = re.sub(r"/[^\s'\"]*/" + re.escape(wrappers_dir().name) + "/" + re.escape(program) + r"(?=\s|$|['\"])",
                       generic, value)
    return value


def _relocate_text(value: str, build_paths: list[str], prefix_ref: str, srcdir_ref: str) -> str:
    """Point the install prefix at prefix_ref and what is left of the build
    tree (srcdir and friends) at srcdir_ref: the config directory stands in for
    the source tree once installed, as sysconfig expects."""
    value = generic_programs(scrub_flags(value, build_paths))
    for path in build_paths:
        value = re.sub(re.escape(path) + r"[^\s'\"]*", srcdir_ref, value)
    return value.replace(INSTALL_PREFIX, prefix_ref)


def relocate_sysconfigdata(tree: Path, build_paths: list[str]) -> None:
    for data_file in (tree / "lib").glob("python3.*/_sysconfigdata_*.py"):
        namespace: dict = {}
        exec(compile(data_file.read_text(), str(data_file), "exec"), namespace)
        variables = namespace["build_time_vars"]
        libpl = variables.get("LIBPL", "").replace(INSTALL_PREFIX, PREFIX_TOKEN)
        relocated = {
            key: _relocate_text(value, build_paths, PREFIX_TOKEN, libpl) if isinstance(value, str) else value
            for key, value in variables.items()
        }
        data_file.write_text(_render_sysconfigdata(relocated))


def _render_sysconfigdata(variables: dict) -> str:
    """A plain dict literal, one key a line, exactly as tools that parse and
    rewrite this file expect (uv: the header line, then the assignment; no
    other comment, no parenthesised strings). The patched sysconfig resolves
    PREFIX_TOKEN."""
    lines = [f"    {key!r}: {variables[key]!r}," for key in sorted(variables)]
    return "\n".join(
        ["# system configuration generated and used by the sysconfig module", "build_time_vars = {", *lines, "}", ""]
    )


def relocate_makefile(tree: Path, build_paths: list[str]) -> None:
    for makefile in (tree / "lib").glob("python3.*/config-*/Makefile"):
        out = []
        for line in makefile.read_text().splitlines():
            if re.match(r"^prefix\s*=", line):
                out.append(MAKEFILE_PREFIX)
                continue
            name, sep, value = line.partition("=")
            if sep and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*\s*", name):
                value = _relocate_text(value, build_paths, "$(prefix)", "$(LIBPL)")
                line = name + sep + value
            else:
                line = _relocate_text(line, build_paths, "$(prefix)", "$(LIBPL)")
            out.append(line)
        makefile.write_text("\n".join(out) + "\n")


def relocate_python_config(tree: Path, build_paths: list[str]) -> None:
    for script in (tree / "bin").glob("python3*-config"):
        if script.is_symlink():
            continue
        text = script.read_text()
        # Upstream's helper breaks on paths with spaces: quote every expansion.
        text = text.replace(
            'RESULT=$(dirname $(cd $(dirname "$1") && pwd -P))',
            'RESULT=$(dirname "$(cd "$(dirname "$1")" && pwd -P)")',
        )
        text = _relocate_text(text, build_paths, "${prefix_real}", "${prefix_real}")
        script.write_text(text)
        script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def relocate_pkgconfig(tree: Path) -> None:
    for pc in (tree / "lib" / "pkgconfig").glob("*.pc"):
        if pc.is_symlink():
            continue
        lines = []
        for line in pc.read_text().splitlines():
            if line.startswith("prefix="):
                line = "prefix=${pcfiledir}/../.."
            else:
                line = line.replace(INSTALL_PREFIX, "${prefix}")
            lines.append(line)
        pc.write_text("\n".join(lines) + "\n")


def remove_bytecode(tree: Path) -> None:
    for cache in sorted(tree.rglob("__pycache__"), reverse=True):
        shutil.rmtree(cache)
