"""ELF rules for a portable interpreter, checked with pyelftools.

Each ELF file may need only the platform's base libraries (or the tree's own
libpython), must find those of the tree through $ORIGIN, must not have an
executable stack, must be full RELRO (RELRO + BIND_NOW), must not export a bundled
dependency's symbols, and what the loader reads must be intact: loaded
sections where their segments map them, consistent symbol-version sections (a
tool that rewrites ELF files, such as a strip that does not understand the
linker's layout, can leave them pointing at garbage).

What the system must provide comes from a platform policy
(recipes/policies.toml): the libraries a file may need, and the highest
version of each symbol-version namespace. The highest version of the libc's
own namespace (GLIBC) decides the tag; the validator compares it with the floor.
"""

from __future__ import annotations

import array
import re
import sys
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.constants import SH_FLAGS
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerDefSection, GNUVerNeedSection, GNUVerSymSection
from elftools.elf.hash import ELFHashTable
from pydantic import BaseModel

from relocpy.models import PlatformPolicy, version_tuple

OWN_LIBRARY = re.compile(r"^libpython3(\.\d+[td]*)?\.so(\.1\.0)?$")
DF_BIND_NOW = 0x8
DF_1_NOW = 0x1
PF_X = 0x1
# A needed symbol version: namespace, then a dotted number (GLIBC_2.17, CXXABI_TM_1).
SYMBOL_VERSION = re.compile(r"^(?P<namespace>[A-Za-z][A-Za-z0-9_]*?)_(?P<version>\d+(?:\.\d+)*)$")
# pyelftools' name of each architecture's e_machine.
MACHINES = {"x86_64": "EM_X86_64", "aarch64": "EM_AARCH64"}
VERSYM_HIDDEN = 0x8000  # the "hidden" bit of a .gnu.version entry, not part of the index
# The dynamic tags locating each symbol-version section, and its entry count.
VERSION_TAGS = {
    GNUVerSymSection: ("DT_VERSYM", None),
    GNUVerNeedSection: ("DT_VERNEED", "DT_VERNEEDNUM"),
    GNUVerDefSection: ("DT_VERDEF", "DT_VERDEFNUM"),
}


class ElfSummary(BaseModel):
    files: int
    problems: list[str]
    libc_max: str | None  # the highest version of the policy's libc namespace any file needs
    libc_by_file: dict[str, str]  # file -> the highest it needs, for files that need one


def is_elf(path: Path) -> bool:
    if path.is_symlink() or not path.is_file():
        return False
    with path.open("rb") as handle:
        return handle.read(4) == b"\x7fELF"


def check_tree(tree: Path, platform: PlatformPolicy, export_prefixes: list[str]) -> ElfSummary:
    problems: list[str] = []
    by_file: dict[str, str] = {}
    files = [p for p in sorted(tree.rglob("*")) if is_elf(p)]
    for path in files:
        name = str(path.relative_to(tree))
        try:
            file_problems, libc = check_file(path, platform, export_prefixes)
        except ELFError as exc:
            problems.append(f"{name}: unreadable ELF ({exc})")
            continue
        problems += [f"{name}: {p}" for p in file_problems]
        if libc:
            by_file[name] = libc
    highest = max(by_file.values(), key=version_tuple, default=None)
    return ElfSummary(files=len(files), problems=problems, libc_max=highest, libc_by_file=by_file)


def check_file(path: Path, platform: PlatformPolicy, export_prefixes: list[str]) -> tuple[list[str], str | None]:
    """The file's problems, and the highest version of the libc's namespace it needs."""
    with path.open("rb") as handle:
        elf = ELFFile(handle)
        machine = [] if elf["e_machine"] == MACHINES.get(platform.arch) else [
            f"built for {elf['e_machine']}, not {platform.arch}"]  # e.g. a build machine's file in a cross build
        dynamic = elf.get_section_by_name(".dynamic")
        if not isinstance(dynamic, DynamicSection):
            return machine, None  # a static object or relocatable file: nothing is loaded
        problems = machine + _needed_problems(dynamic, platform) + _hardening_problems(elf, dynamic)
        problems += _export_problems(elf, export_prefixes)
        problems += layout_problems(elf) or version_problems(elf, dynamic)
        needed = needed_versions(elf)
        problems += ceiling_problems(needed, platform)
        libc = needed.get(platform.libc_versions, []) if platform.libc_versions else []
        return problems, max(libc, key=version_tuple, default=None)


def _needed_problems(dynamic: DynamicSection, platform: PlatformPolicy) -> list[str]:
    problems = []
    allowed = platform.allowed_libraries
    for tag in dynamic.iter_tags():
        if tag.entry.d_tag == "DT_NEEDED":
            lib = tag.needed
            if lib not in allowed and not OWN_LIBRARY.match(lib):
                problems.append(f"needs {lib}, not a base library of {platform.name}")
        elif tag.entry.d_tag in ("DT_RPATH", "DT_RUNPATH"):
            value = tag.rpath if tag.entry.d_tag == "DT_RPATH" else tag.runpath
            for entry in value.split(":"):
                if entry and not entry.startswith("$ORIGIN"):
                    problems.append(f"search path {entry} is not relative to $ORIGIN")
    return problems


def _hardening_problems(elf: ELFFile, dynamic: DynamicSection) -> list[str]:
    problems = []
    segments = {seg["p_type"]: seg for seg in elf.iter_segments()}
    stack = segments.get("PT_GNU_STACK")
    if stack is None or stack["p_flags"] & PF_X:
        problems.append("executable stack")
    if "PT_GNU_RELRO" not in segments:
        problems.append("no RELRO")
    flags = {tag.entry.d_tag: tag.entry.d_val for tag in dynamic.iter_tags()}
    bind_now = "DT_BIND_NOW" in flags or flags.get("DT_FLAGS", 0) & DF_BIND_NOW or flags.get("DT_FLAGS_1", 0) & DF_1_NOW
    if not bind_now:
        problems.append("no BIND_NOW")
    return problems


def exported_symbols(elf: ELFFile) -> list[str]:
    dynsym = elf.get_section_by_name(".dynsym")
    if dynsym is None:
        return []
    return [
        sym.name
        for sym in dynsym.iter_symbols()
        if sym.name
        and sym["st_shndx"] != "SHN_UNDEF"
        and sym["st_info"]["bind"] in ("STB_GLOBAL", "STB_WEAK")
        and sym["st_other"]["visibility"] in ("STV_DEFAULT", "STV_PROTECTED")
    ]


def _export_problems(elf: ELFFile, export_prefixes: list[str]) -> list[str]:
    if not export_prefixes:
        return []
    prefixes = tuple(export_prefixes)
    leaked = [name for name in exported_symbols(elf) if name.startswith(prefixes)]
    if not leaked:
        return []
    return [f"exports {len(leaked)} bundled-library symbol(s), e.g. {', '.join(sorted(leaked)[:3])}"]


# --- what the loader reads ----------------------------------------------------------


def layout_problems(elf: ELFFile) -> list[str]:
    """Each loaded section's bytes are the ones its segments map at its
    address: tools read sections by file offset, the loader by address. A
    rewrite that moves a section without the bytes the loader maps (GNU strip
    does so with .dynstr of lld-linked files) leaves the loader reading other
    bytes as symbol and version names. (llvm-strip moves .dynstr too, but the
    bytes stay where the loader maps them.)"""
    loads = [seg for seg in elf.iter_segments() if seg["p_type"] == "PT_LOAD"]
    problems = []
    for section in elf.iter_sections():
        if not section["sh_flags"] & SH_FLAGS.SHF_ALLOC or section["sh_type"] == "SHT_NOBITS" or not section["sh_size"]:
            continue
        if _loaded_bytes(elf, loads, section["sh_addr"], section["sh_size"]) != section.data():
            problems.append(f"{section.name} is not what the loader reads at its address {section['sh_addr']:#x} "
                            f"(the section is at file offset {section['sh_offset']:#x})")
    return problems


def _loaded_bytes(elf: ELFFile, loads, address: int, size: int) -> bytes | None:
    """The file's bytes the PT_LOAD segments map at [address, address + size);
    None where a part is not loaded from the file (a section may span two
    segments: patchelf lays files out so)."""
    pieces = []
    end = address + size
    while address < end:
        seg = next((s for s in loads if s["p_vaddr"] <= address < s["p_vaddr"] + s["p_filesz"]), None)
        if seg is None:
            return None
        length = min(end, seg["p_vaddr"] + seg["p_filesz"]) - address
        elf.stream.seek(seg["p_offset"] + address - seg["p_vaddr"])
        pieces.append(elf.stream.read(length))
        address += length
    return b"".join(pieces)


# --- symbol versions ----------------------------------------------------------------


def version_problems(elf: ELFFile, dynamic: DynamicSection) -> list[str]:
    """The symbol-version sections agree with the dynamic section (which is
    what the loader reads), with .dynsym and with each other, and name only
    versions of the libraries the file declares it needs."""
    sections = {kind: [s for s in elf.iter_sections() if isinstance(s, kind)] for kind in VERSION_TAGS}
    problems = _version_tag_problems(elf, dynamic, sections)
    if problems:
        return problems
    versym = sections[GNUVerSymSection][0] if sections[GNUVerSymSection] else None
    if versym is None:
        return []
    known = {0, 1}  # local, global: the two indexes every file has
    for verneed in sections[GNUVerNeedSection]:
        found, more = _verneed_problems(verneed, _needed(dynamic))
        problems += found
        known |= more
    for verdef in sections[GNUVerDefSection]:
        for entry, auxiliaries in verdef.iter_versions():
            known.add(entry["vd_ndx"])
            if not any(aux.name for aux in auxiliaries):
                problems.append(f"{verdef.name}: version {entry['vd_ndx']} has no name")
    return problems + _versym_problems(elf, versym, known)


def _version_tag_problems(elf: ELFFile, dynamic: DynamicSection, sections: dict) -> list[str]:
    tags = {tag.entry.d_tag: tag.entry.d_val for tag in dynamic.iter_tags()}
    problems = []
    for kind, (address_tag, count_tag) in VERSION_TAGS.items():
        found = sections[kind]
        if len(found) > 1:
            problems.append(f"{len(found)} sections of type {found[0]['sh_type']}")
            continue
        section = found[0] if found else None
        if (section is None) != (address_tag not in tags):
            what = f"{address_tag} without its section" if section is None else f"{section.name} without {address_tag}"
            problems.append(f"symbol versions: {what}")
        elif section is not None and section["sh_addr"] != tags[address_tag]:
            problems.append(f"symbol versions: {address_tag} points at {tags[address_tag]:#x}, "
                            f"but {section.name} is at {section['sh_addr']:#x}")
        elif section is not None and count_tag and tags.get(count_tag) != section["sh_info"]:
            problems.append(f"symbol versions: {count_tag} is {tags.get(count_tag)}, "
                            f"but {section.name} holds {section['sh_info']} entries")
    return problems


def _verneed_problems(verneed: GNUVerNeedSection, needed: set[str]) -> tuple[list[str], set[int]]:
    problems, indexes = [], set()
    for entry, auxiliaries in verneed.iter_versions():
        if entry.name not in needed:
            problems.append(f"{verneed.name}: versions of {entry.name or '(no name)'}, which is not in DT_NEEDED")
        for aux in auxiliaries:
            indexes.add(aux["vna_other"])
            if not aux.name or aux["vna_hash"] != ELFHashTable.elf_hash(aux.name):
                problems.append(f"{verneed.name}: damaged version entry {aux.name or '(no name)'!r} of {entry.name}")
    return problems, indexes


def _versym_problems(elf: ELFFile, versym: GNUVerSymSection, known: set[int]) -> list[str]:
    dynsym = elf.get_section_by_name(".dynsym")
    symbols = dynsym.num_symbols() if dynsym is not None else 0
    # Read the entries as one array: files like libpython have thousands.
    entries = array.array("H", versym.data())
    if elf.little_endian != (sys.byteorder == "little"):
        entries.byteswap()
    if len(entries) != symbols:
        return [f"{versym.name}: {len(entries)} entries for {symbols} symbols in .dynsym"]
    unknown = sorted({e & ~VERSYM_HIDDEN for e in entries} - known)
    if unknown:
        return [f"{versym.name}: symbols use version indexes {unknown[:5]} that no version section defines"]
    return []


def _needed(dynamic: DynamicSection) -> set[str]:
    return {tag.needed for tag in dynamic.iter_tags() if tag.entry.d_tag == "DT_NEEDED"}


# --- what the files need of the system ------------------------------------------


def needed_versions(elf: ELFFile) -> dict[str, list[str]]:
    """Namespace -> versions, of every symbol version the file needs from
    another library (its own libpython's aside); a name that is no
    namespace_version pair (GLIBC_PRIVATE) is its own namespace, versionless."""
    found: dict[str, list[str]] = {}
    for section in elf.iter_sections():
        if not isinstance(section, GNUVerNeedSection):
            continue
        for verneed, auxiliaries in section.iter_versions():
            if OWN_LIBRARY.match(verneed.name or ""):
                continue
            for aux in (a for a in auxiliaries if a.name):  # a nameless one is damage: version_problems
                match = SYMBOL_VERSION.match(aux.name)
                namespace, version = (match["namespace"], match["version"]) if match else (aux.name, "")
                found.setdefault(namespace, []).append(version)
    return found


def ceiling_problems(needed: dict[str, list[str]], platform: PlatformPolicy) -> list[str]:
    """Each namespace but the libc's (the floor is its ceiling, checked over the
    whole tree) must be one the policy names, at or below its ceiling."""
    problems = []
    for namespace, versions in sorted(needed.items()):
        if platform.libc_versions and namespace == platform.libc_versions:
            continue
        ceiling = platform.symbol_versions.get(namespace)
        if ceiling is None or not all(versions):
            names = ", ".join(sorted(f"{namespace}_{v}" if v else namespace for v in set(versions)))
            problems.append(f"needs symbol versions {platform.name} does not allow: {names}")
            continue
        above = sorted({v for v in versions if version_tuple(v) > version_tuple(ceiling)}, key=version_tuple)
        if above:
            problems.append(f"needs {namespace}_{above[-1]}, above {platform.name}'s {namespace}_{ceiling}")
    return problems


def platform_tag(platform: PlatformPolicy, libc_max: str | None) -> str:
    """The tag the files support. manylinux (PEP 600): the highest glibc
    version they need (the floor when they need no versioned symbol of it).
    musllinux (PEP 656): musl has no symbol versions, so the policy's floor."""
    if platform.libc_versions and libc_max:
        return platform.tag(libc_max)
    return platform.tag(platform.floor)
