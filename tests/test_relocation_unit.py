"""Relocation, ELF rules, tags and archive determinism on small files the
tests compile and write themselves (no CPython build needed)."""

from __future__ import annotations

import ast
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from elftools.elf.elffile import ELFFile

from relocpy import elf
from relocpy.cpython import INSTALL_PREFIX
from relocpy.package import write_archive
from relocpy.paths import project_root
from relocpy.recipes import load_recipes
from relocpy.relocate import (
    PREFIX_TOKEN,
    UNREACHABLE_PREFIX,
    replace_compiled_prefix,
    relocate_makefile,
    relocate_pkgconfig,
    relocate_python_config,
    relocate_sysconfigdata,
    scrub_flags,
    trampoline,
)
from relocpy.validate import find_build_paths

HARDENED = ["-Wl,-z,relro", "-Wl,-z,now", "-Wl,-z,noexecstack"]
GLIBC_X86_64 = load_recipes().policies["manylinux_2_17_x86_64"]  # the host's, for what gcc builds here


def cc(tmp_path: Path, source: str, out: str, *flags: str) -> Path:
    src = tmp_path / f"{out}.c"
    src.write_text(source)
    target = tmp_path / out
    subprocess.run(["gcc", "-O1", "-fPIC", str(src), "-o", str(target), *flags], check=True, capture_output=True)
    return target


MAIN = "#include <string.h>\n#include <stdio.h>\nint main(int c, char **v) { puts(strchr(v[0], '/') ? \"x\" : \"y\"); return 0; }\n"


def test_hardened_program_has_no_problems_and_a_glibc_version(tmp_path):
    program = cc(tmp_path, MAIN, "ok", *HARDENED)
    problems, glibc = elf.check_file(program, GLIBC_X86_64, [])
    assert problems == []
    assert glibc is not None and glibc.startswith("2.")


def test_executable_stack_lazy_binding_and_foreign_libraries_are_refused(tmp_path):
    lib = cc(tmp_path, "int foo(void) { return 1; }\n", "libfoo.so", "-shared", *HARDENED)
    program = cc(
        tmp_path, "int foo(void); int main(void) { return foo(); }\n", "bad",
        "-Wl,-z,execstack", "-Wl,-z,lazy", "-Wl,-z,norelro", f"-L{tmp_path}", "-lfoo", f"-Wl,-rpath,{tmp_path}",
    )
    problems, _ = elf.check_file(program, GLIBC_X86_64, [])
    text = " | ".join(problems)
    assert "executable stack" in text
    assert "no BIND_NOW" in text
    assert "no RELRO" in text
    assert "needs libfoo.so, not a base library of manylinux_2_17_x86_64" in text
    assert f"search path {tmp_path} is not relative to $ORIGIN" in text
    assert lib.exists()


def test_exported_dependency_symbols_are_caught_and_hidden_by_exclude_libs(tmp_path):
    obj = tmp_path / "dep.o"
    (tmp_path / "dep.c").write_text("int sqlite3_answer(void) { return 42; }\n")
    subprocess.run(["gcc", "-fPIC", "-c", str(tmp_path / "dep.c"), "-o", str(obj)], check=True)
    subprocess.run(["ar", "rcs", str(tmp_path / "libdep.a"), str(obj)], check=True)
    ext = "int sqlite3_answer(void);\nint module_init(void) { return sqlite3_answer(); }\n"
    leaky = cc(tmp_path, ext, "leaky.so", "-shared", *HARDENED, f"-L{tmp_path}", "-ldep")
    hidden = cc(tmp_path, ext, "hidden.so", "-shared", *HARDENED, "-Wl,--exclude-libs,ALL", f"-L{tmp_path}", "-ldep")
    assert any("exports 1 bundled-library symbol" in p for p in elf.check_file(leaky, GLIBC_X86_64, ["sqlite3_"])[0])
    assert elf.check_file(hidden, GLIBC_X86_64, ["sqlite3_"])[0] == []


def test_origin_rpath_is_accepted(tmp_path):
    program = cc(tmp_path, MAIN, "origin", *HARDENED, "-Wl,-rpath,$ORIGIN/../lib")
    assert elf.check_file(program, GLIBC_X86_64, [])[0] == []


@pytest.mark.parametrize(
    "glibc, policy, tag",
    [("2.17", "manylinux_2_17_x86_64", "manylinux_2_17_x86_64"), ("2.36", "manylinux_2_17_x86_64", "manylinux_2_36_x86_64"),
     ("2.3.4", "manylinux_2_17_aarch64", "manylinux_2_3_aarch64"), (None, "manylinux_2_17_x86_64", "manylinux_2_17_x86_64")],
)
def test_manylinux_tag_from_the_highest_glibc_version(glibc, policy, tag):
    assert elf.platform_tag(load_recipes().policies[policy], glibc) == tag


def test_tree_summary_takes_the_highest_version(tmp_path):
    cc(tmp_path, MAIN, "a", *HARDENED)
    summary = elf.check_tree(tmp_path, GLIBC_X86_64, [])
    assert summary.files == 1 and summary.libc_max == max(summary.libc_by_file.values())


# --- scripts and sysconfig -------------------------------------------------------


def test_trampoline_runs_the_interpreter_beside_the_script_through_a_symlink(tmp_path):
    bindir = tmp_path / "pre fix é" / "bin"
    bindir.mkdir(parents=True)
    (bindir / "python3.99").symlink_to(sys.executable)
    script = bindir / "tool"
    script.write_text(trampoline("python3.99") + "import sys\nprint('args', sys.argv[1:])\n")
    script.chmod(0o755)
    link = tmp_path / "tool-link"
    link.symlink_to(script)
    out = subprocess.run([str(link), "a b", "c"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "args ['a b', 'c']"


def test_scrub_flags_drops_only_build_paths():
    value = "-I/build/deps/include -O2 -L/build/deps/lib -lm -I/usr/include/x"
    assert scrub_flags(value, ["/build/deps"]) == "-O2 -lm -I/usr/include/x"


def make_tree(tmp_path: Path, build: str) -> Path:
    tree = tmp_path / "python"
    (tree / "lib" / "python3.99" / "config-3.99-x86_64-linux-gnu").mkdir(parents=True)
    (tree / "lib" / "pkgconfig").mkdir()
    (tree / "bin").mkdir()
    variables = {
        "prefix": INSTALL_PREFIX,
        "LIBDIR": f"{INSTALL_PREFIX}/lib",
        "LIBPL": f"{INSTALL_PREFIX}/lib/python3.99/config-3.99-x86_64-linux-gnu",
        "CFLAGS": f"-O3 -I{build}/deps/include",
        "abs_srcdir": f"{build}/src/Python-3.99",
        "SIZEOF_INT": 4,
    }
    (tree / "lib" / "python3.99" / "_sysconfigdata__linux_x.py").write_text(f"build_time_vars = {variables!r}\n")
    return tree


def test_sysconfigdata_is_a_literal_with_the_prefix_token(tmp_path):
    """uv parses this file as a dict literal; the sysconfig patch resolves the token."""
    build = "/tmp/build-machine-xyz"
    tree = make_tree(tmp_path, build)
    relocate_sysconfigdata(tree, [build])
    data_file = tree / "lib" / "python3.99" / "_sysconfigdata__linux_x.py"
    text = data_file.read_text()
    assert INSTALL_PREFIX not in text and build not in text
    # uv's parser: this header line, then the assignment, then one literal a line
    assert text.splitlines()[:2] == ["# system configuration generated and used by the sysconfig module",
                                     "build_time_vars = {"]
    assert all(": (" not in line for line in text.splitlines())
    variables = ast.literal_eval(text.split("build_time_vars = ", 1)[1])
    assert variables["prefix"] == PREFIX_TOKEN
    assert variables["LIBDIR"] == f"{PREFIX_TOKEN}/lib"
    assert variables["CFLAGS"] == "-O3"
    assert variables["abs_srcdir"] == variables["LIBPL"] == f"{PREFIX_TOKEN}/lib/python3.99/config-3.99-x86_64-linux-gnu"
    assert variables["SIZEOF_INT"] == 4


@pytest.mark.parametrize("minor", ["3.13", "3.11"])
def test_sysconfig_patch_resolves_the_token(minor):
    patch = (project_root() / "patches" / "cpython" / minor).glob("*-sysconfig-relocatable-prefix.patch")
    text = next(patch).read_text()
    assert f"_RELOCATABLE_PREFIX = '{PREFIX_TOKEN}'" in text
    assert "vars.update(_relocated(build_time_vars))" in text


def test_makefile_prefix_follows_the_makefile(tmp_path):
    build = "/tmp/build-machine-xyz"
    tree = make_tree(tmp_path, build)
    makefile = tree / "lib" / "python3.99" / "config-3.99-x86_64-linux-gnu" / "Makefile"
    makefile.write_text(
        f"prefix=\t\t{INSTALL_PREFIX}\nLIBDIR=\t\t{INSTALL_PREFIX}/lib\nCPPFLAGS=\t-I{build}/deps/include -DX\n"
        "print:\n\t@echo $(prefix) $(LIBDIR) $(CPPFLAGS)\n"
    )
    relocate_makefile(tree, [build])
    out = subprocess.run(["make", "-s", "-f", str(makefile), "print"], capture_output=True, text=True, check=True)
    assert out.stdout.split() == [str(tree), f"{tree}/lib", "-DX"]


def test_python_config_and_pkgconfig(tmp_path):
    build = "/tmp/build-machine-xyz"
    tree = make_tree(tmp_path, build)
    config = tree / "bin" / "python3.99-config"
    config.write_text(
        "#!/bin/sh\ninstalled_prefix ()\n{\n    RESULT=$(dirname $(cd $(dirname \"$1\") && pwd -P))\n    echo $RESULT\n}\n"
        f'prefix_real=$(installed_prefix "$0")\nprefix="{INSTALL_PREFIX}"\n'
        f'includedir=$(echo "{INSTALL_PREFIX}/include" | sed "s#$prefix#$prefix_real#")\necho "-I$includedir"\n'
    )
    relocate_python_config(tree, [build])
    moved = tmp_path / "with space" / "python"
    moved.parent.mkdir()
    tree.rename(moved)
    out = subprocess.run([str(moved / "bin" / "python3.99-config")], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"-I{moved}/include"
    pc = moved / "lib" / "pkgconfig" / "python3.pc"
    pc.write_text(f"prefix={INSTALL_PREFIX}\nlibdir={INSTALL_PREFIX}/lib\nincludedir=${{prefix}}/include\n"
                  "Name: Python\nDescription: x\nVersion: 3.99\nCflags: -I${includedir}/python3.99\n")
    relocate_pkgconfig(moved)
    if shutil.which("pkg-config"):
        out = subprocess.run(["pkg-config", "--cflags", "python3"], capture_output=True, text=True, check=True,
                             env={**os.environ, "PKG_CONFIG_PATH": str(moved / "lib" / "pkgconfig")})
        assert os.path.realpath(out.stdout.strip()[2:].replace("\\ ", " ")) == str(moved / "include" / "python3.99")


def test_find_build_paths_reports_text_and_binary_files(tmp_path):
    cache = "/home/builder/.cache/relocpy"
    (tmp_path / "python").mkdir()
    (tmp_path / "python" / "a.txt").write_text(f"see {INSTALL_PREFIX}/lib\n")
    (tmp_path / "python" / "b.bin").write_bytes(b"\0\1" + f"{cache}/deps/x/prefix/lib/ossl-modules".encode() + b"\0")
    (tmp_path / "python" / "c.txt").write_text("clean\n")
    problems = find_build_paths(tmp_path / "python", [INSTALL_PREFIX, cache])
    assert problems == [f"python/a.txt names the build path {INSTALL_PREFIX}", f"python/b.bin names the build path {cache}"]


def test_the_compiled_in_install_prefix_becomes_unreachable(tmp_path):
    """getpath's fallback prefix: a C string literal, replaced in place."""
    source = f'#include <stdio.h>\nint main(void) {{ puts("{INSTALL_PREFIX}"); puts("{INSTALL_PREFIX}/lib"); return 0; }}\n'
    binary = cc(tmp_path, source, "getpath", *HARDENED)
    size = binary.stat().st_size
    replace_compiled_prefix(tmp_path)
    out = subprocess.run([str(binary)], capture_output=True, text=True, check=True).stdout.splitlines()
    # the exact literal is replaced; a longer string naming the prefix is left for the validator
    assert out == [UNREACHABLE_PREFIX, f"{INSTALL_PREFIX}/lib"]
    assert binary.stat().st_size == size


# --- symbol-version sections -------------------------------------------------------


def _patch(path: Path, offset: int, data: bytes) -> None:
    with path.open("r+b") as handle:
        handle.seek(offset)
        handle.write(data)


def _section(path: Path, name: str):
    with path.open("rb") as handle:
        section = ELFFile(handle).get_section_by_name(name)
        return section["sh_offset"], section["sh_size"]


def test_intact_symbol_versions_pass(tmp_path):
    binary = cc(tmp_path, MAIN, "a", *HARDENED)
    assert elf.check_file(binary, GLIBC_X86_64, [])[0] == []


def test_a_symbol_version_index_no_section_defines_is_refused(tmp_path):
    binary = cc(tmp_path, MAIN, "a", *HARDENED)
    offset, size = _section(binary, ".gnu.version")
    _patch(binary, offset + size - 2, (0x7ff0).to_bytes(2, "little"))
    problems, _ = elf.check_file(binary, GLIBC_X86_64, [])
    assert problems == [".gnu.version: symbols use version indexes [32752] that no version section defines"]


def test_a_damaged_version_name_is_refused(tmp_path):
    binary = cc(tmp_path, MAIN, "a", *HARDENED)
    offset, _ = _section(binary, ".gnu.version_r")
    # the first Vernaux entry follows its 16-byte Verneed; vna_hash is its first word
    _patch(binary, offset + 16, (0).to_bytes(4, "little"))
    problems, _ = elf.check_file(binary, GLIBC_X86_64, [])
    assert len(problems) == 1 and problems[0].startswith(".gnu.version_r: damaged version entry 'GLIBC_"), problems


def test_a_version_count_the_loader_would_misread_is_refused(tmp_path):
    binary = cc(tmp_path, MAIN, "a", *HARDENED)
    offset, size = _section(binary, ".dynamic")
    with binary.open("rb") as handle:
        handle.seek(offset)
        entries = handle.read(size)
    for at in range(0, size, 16):  # Elf64_Dyn: d_tag, d_val
        if int.from_bytes(entries[at:at + 8], "little") == 0x6FFFFFFF:  # DT_VERNEEDNUM
            count = int.from_bytes(entries[at + 8:at + 16], "little")
            _patch(binary, offset + at + 8, (count + 1).to_bytes(8, "little"))
    problems, _ = elf.check_file(binary, GLIBC_X86_64, [])
    assert problems == [f"symbol versions: DT_VERNEEDNUM is {count + 1}, but .gnu.version_r holds {count} entries"]


def test_a_section_moved_away_from_its_segment_is_refused(tmp_path):
    """What GNU strip does to .dynstr of lld-linked files: the section header
    points at new bytes, the loader still reads the old address."""
    binary = cc(tmp_path, MAIN, "a", *HARDENED)
    index = _section_index(binary, ".dynstr")
    with binary.open("rb") as handle:
        header = ELFFile(handle).header
    sh_offset = header["e_shoff"] + index * header["e_shentsize"] + 24  # Elf64_Shdr.sh_offset
    _patch(binary, sh_offset, (binary.stat().st_size).to_bytes(8, "little"))
    problems, _ = elf.check_file(binary, GLIBC_X86_64, [])
    assert any(p.startswith(".dynstr is not what the loader reads") for p in problems), problems


def _section_index(path: Path, name: str) -> int:
    with path.open("rb") as handle:
        return next(i for i, s in enumerate(ELFFile(handle).iter_sections()) if s.name == name)


# --- archives ----------------------------------------------------------------------


def test_archives_are_deterministic(tmp_path):
    tree = tmp_path / "tree"
    (tree / "bin").mkdir(parents=True)
    (tree / "bin" / "tool").write_text("#!/bin/sh\n")
    (tree / "bin" / "tool").chmod(0o775)
    (tree / "lib").mkdir()
    (tree / "lib" / "z.txt").write_text("z")
    (tree / "lib" / "a.txt").write_text("a")
    (tree / "bin" / "link").symlink_to("tool")
    entries = [(f"python/{p.relative_to(tree).as_posix()}", p) for p in tree.rglob("*")]
    first = tmp_path / "one.tar.gz"
    write_archive(first, entries, 1767225600, None)
    time.sleep(1.1)
    os.utime(tree / "lib" / "a.txt")
    second = tmp_path / "two.tar.gz"
    write_archive(second, list(reversed(entries)), 1767225600, None)
    assert hashlib.sha256(first.read_bytes()).digest() == hashlib.sha256(second.read_bytes()).digest()
    with tarfile.open(first) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names)
    assert all(m.uid == 0 and m.gid == 0 and m.mtime == 1767225600 for m in members)
    assert {m.name: m.mode for m in members}["python/bin/tool"] == 0o755
    assert {m.name: m.mode for m in members}["python/lib/a.txt"] == 0o644
    zst = tmp_path / "full.tar.zst"
    write_archive(zst, entries, 1767225600, None)
    again = tmp_path / "full2.tar.zst"
    write_archive(again, entries, 1767225600, None)
    assert zst.read_bytes() == again.read_bytes()


def test_compiler_wrappers_of_any_checkout_become_generic_names():
    """A cached CPython tree may come from another checkout sharing the cache."""
    from relocpy.relocate import generic_programs

    value = "'CC': '/tmp/other-checkout/repo/build/toolchain/zig-clang -pthread', 'AR': '/x/build/toolchain/zig-ar'"
    assert generic_programs(value) == "'CC': 'cc -pthread', 'AR': 'ar'"
    assert generic_programs("/srv/repo/build/toolchain/zig-c++ -O2") == "c++ -O2"
