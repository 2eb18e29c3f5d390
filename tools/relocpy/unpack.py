"""Unpack an install_only archive into a staging directory, fast and safely.

The archive is inflated into memory in one call, every member header is read
and checked before the first byte is written, and then files are written
straight from that buffer with a handful of syscalls each. Checking the whole
member list up front lets the checks reason about the tree as a whole (links
through links, duplicate names) instead of about the file system half-way
through an extraction, and means a refused archive writes nothing at all.

Memory: the inflated tar (about three times the download) is held at once.
"""

from __future__ import annotations

import io
import os
import queue
import tarfile
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from relocpy.errors import InstallError, UnsafeArchiveError
from relocpy.extras import require

try:  # ISA-L inflates about twice as fast as zlib; same API, same formats
    from isal import isal_zlib as inflate_lib
except ImportError:  # no wheel for this platform
    inflate_lib = zlib

ROOT = "python"
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
MAX_LINK_HOPS = 40  # as the kernel's ELOOP limit
WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)


@dataclass(frozen=True)
class Plan:
    """What an archive holds, checked: dirs, then files and links, in archive order."""

    dirs: list[str]
    files: list[tarfile.TarInfo]
    links: list[tarfile.TarInfo]  # symlinks and hard links, made after every file exists


def unpack(archive: Path, dest: Path, raw: bytes | None = None) -> Path:
    """Check every member, then write them under dest; returns dest/python,
    which must hold bin/python3 (an install_only archive).

    raw is the archive already inflated (StreamInflater), if it was. dest is a
    staging dir that the caller discards if anything fails.
    """
    prefix = extract(archive, dest, raw)
    if not (prefix / "bin" / "python3").exists():
        raise InstallError(f"{archive.name}: no {ROOT}/bin/python3 in the archive")
    return prefix


def extract(archive: Path, dest: Path, raw: bytes | None = None) -> Path:
    """unpack, for any flavor: returns dest/python, whatever it holds."""
    raw = inflate(archive) if raw is None else raw
    try:
        members = tarfile.open(fileobj=io.BytesIO(raw), mode="r:").getmembers()  # shares raw, no copy
    except (tarfile.TarError, EOFError) as exc:
        raise InstallError(f"{archive.name}: cannot unpack: {exc}") from None
    plan = check_all(members)
    try:
        write(plan, memoryview(raw), dest)
    except OSError as exc:
        raise InstallError(f"{archive.name}: cannot unpack: {exc}") from None
    return dest / ROOT


def inflate(archive: Path) -> bytes:
    """The archive's tar bytes: gzip (zlib in C, GIL released) or zstd."""
    raw = archive.read_bytes()
    if raw.startswith(ZSTD_MAGIC):
        zstandard = require("build", "zstandard")  # only the full flavor uses zstd
    try:
        if raw.startswith(GZIP_MAGIC):
            return gunzip(raw)
        if raw.startswith(ZSTD_MAGIC):
            return zstandard.ZstdDecompressor().decompressobj().decompress(raw)
    except (OSError, EOFError, zlib.error, inflate_lib.error) as exc:
        raise InstallError(f"{archive.name}: cannot unpack: {exc}") from None
    except Exception as exc:  # zstandard.ZstdError, without importing it up front
        raise InstallError(f"{archive.name}: cannot unpack: {exc}") from None
    raise InstallError(f"{archive.name}: cannot unpack: neither gzip nor zstd")


def gunzip(raw: bytes) -> bytes:
    """gzip.decompress without its separate CRC pass: the inflater checks the CRC itself."""
    parts = []
    while raw:
        inflater = inflate_lib.decompressobj(wbits=31)
        parts.append(inflater.decompress(raw))
        if not inflater.eof:
            raise EOFError("compressed data ends early")
        raw = inflater.unused_data.lstrip(b"\0")  # gzip allows zero padding between members
    return b"".join(parts)


class StreamInflater:
    """Inflates a gzip download on its own thread while it streams in (a fetch Sink).

    The bytes are not verified yet: result() is for the caller to use only once
    the download's sha256 has matched, and it is None whenever the stream did
    not inflate cleanly to its end, so the caller inflates the verified file.
    Output is capped at `limit` bytes so a hostile stream cannot exhaust memory.
    """

    RESTART = object()

    def __init__(self, limit: int):
        self.limit = limit
        self.chunks: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def restart(self) -> None:
        self.chunks.put(self.RESTART)

    def feed(self, chunk: bytes) -> None:
        self.chunks.put(chunk)

    def result(self, size: int) -> bytes | None:
        """The tar bytes, if exactly `size` compressed bytes inflated to a clean end."""
        self.chunks.put(None)
        self.thread.join()
        return self.out if self.ok and self.inflater.eof and self.fed == size else None

    def _run(self) -> None:
        self._reset()
        self.out = None
        while (chunk := self.chunks.get()) is not None:
            if chunk is self.RESTART:
                self._reset()
            elif self.ok:
                self._inflate(chunk)
        self.out = b"".join(self.parts) if self.ok else None
        self.parts = []

    def _reset(self) -> None:
        self.inflater, self.parts, self.fed, self.made, self.ok = inflate_lib.decompressobj(wbits=31), [], 0, 0, True

    def _inflate(self, chunk: bytes) -> None:
        self.fed += len(chunk)
        try:
            while chunk:
                if self.inflater.eof:  # the next gzip member, after any zero padding
                    chunk = chunk.lstrip(b"\0")
                    if not chunk:
                        return
                    self.inflater = inflate_lib.decompressobj(wbits=31)
                self.parts.append(self.inflater.decompress(chunk))
                self.made += len(self.parts[-1])
                chunk = self.inflater.unused_data if self.inflater.eof else b""
        except (zlib.error, inflate_lib.error, MemoryError):
            self.ok, self.parts = False, []
        if self.made > self.limit:
            self.ok, self.parts = False, []


# --- checking -------------------------------------------------------------------------


def refuse(message: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(f"{message}; refusing the archive")


def check_name(member: tarfile.TarInfo) -> PurePosixPath:
    path = PurePosixPath(member.name)
    if path.is_absolute():
        raise refuse(f"archive member {member.name!r} is an absolute path")
    if ".." in path.parts:
        raise refuse(f"archive member {member.name!r} contains '..'")
    if not path.parts or path.parts[0] != ROOT:
        raise refuse(f"archive member {member.name!r} is outside {ROOT}/")
    return path


def check_type(member: tarfile.TarInfo) -> None:
    if member.isdev():
        raise refuse(f"archive member {member.name!r} is a device or fifo")
    if member.issparse() or not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
        raise refuse(f"archive member {member.name!r} has an unsupported type")


def check_all(members: list[tarfile.TarInfo]) -> Plan:
    """Refuse the archive unless every member lands inside python/ and stays there."""
    kinds: dict[PurePosixPath, tarfile.TarInfo] = {}
    for member in members:
        check_type(member)
        path = check_name(member)
        earlier = kinds.get(path)
        if earlier is not None and not (earlier.isdir() and member.isdir()):
            raise refuse(f"archive member {member.name!r} appears twice")
        kinds[path] = member
    symlinks = {p: m.linkname for p, m in kinds.items() if m.issym()}
    linked_dirs = {str(p) for p in symlinks}
    for path, member in kinds.items():
        # Writing through a symlinked directory could land anywhere: refuse the shape outright.
        if linked_dirs and any("/".join(path.parts[:i]) in linked_dirs for i in range(1, len(path.parts))):
            raise refuse(f"archive member {member.name!r} lies under a symlink")
        if member.issym():
            check_symlink(path, member, symlinks)
        elif member.islnk():
            check_hardlink(member, kinds)
    return Plan(
        dirs=[str(p) for p, m in kinds.items() if m.isdir()],
        files=[m for m in kinds.values() if m.isreg()],
        links=[m for m in kinds.values() if m.issym() or m.islnk()],
    )


def check_symlink(path: PurePosixPath, member: tarfile.TarInfo, symlinks: dict) -> None:
    """Resolve the link through the archive's own links, as the kernel would later."""
    if PurePosixPath(member.linkname).is_absolute() or resolve(path.parent, member.linkname, symlinks, 0) is None:
        raise refuse(f"symlink {member.name!r} -> {member.linkname!r} points outside the archive")


def resolve(base: PurePosixPath, target: str, symlinks: dict, hops: int) -> PurePosixPath | None:
    """Where base/target really lands inside python/, or None if it leaves it (or loops)."""
    if hops > MAX_LINK_HOPS:
        return None
    parts = list(base.parts)
    for part in PurePosixPath(target).parts:
        if part == "..":
            parts.pop()
            if not parts:
                return None
        elif part != ".":
            parts.append(part)
            here = PurePosixPath(*parts)
            if here in symlinks:
                landed = resolve(here.parent, symlinks[here], symlinks, hops + 1)
                if landed is None:
                    return None
                parts = list(landed.parts)
    return PurePosixPath(*parts) if parts and parts[0] == ROOT else None


def check_hardlink(member: tarfile.TarInfo, kinds: dict) -> None:
    target = kinds.get(PurePosixPath(member.linkname))
    if target is None or not target.isreg():
        raise refuse(f"hard link {member.name!r} -> {member.linkname!r} points outside the archive's files")


# --- writing ----------------------------------------------------------------------------


def file_mode(mode: int) -> int:
    """As tarfile's 'data' filter: no setuid/setgid/sticky, no group/other write, owner rw."""
    mode = (mode & 0o755) | 0o600
    return mode if mode & 0o100 else mode & ~0o111


def write(plan: Plan, data: memoryview, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    root = str(dest)
    for name in plan.dirs:
        # Modes of dirs are not applied: a read-only dir would block its own members.
        os.makedirs(os.path.join(root, name), exist_ok=True)
    for member in plan.files:
        write_file(os.path.join(root, member.name), member, data)
    for member in plan.links:
        path = os.path.join(root, member.name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if member.issym():
            os.symlink(member.linkname, path)
        else:
            os.link(os.path.join(root, member.linkname), path, follow_symlinks=False)


def write_file(path: str, member: tarfile.TarInfo, data: memoryview) -> None:
    try:
        fd = os.open(path, WRITE_FLAGS, 0o600)
    except FileNotFoundError:  # a file whose directory has no entry of its own
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, WRITE_FLAGS, 0o600)
    try:
        body = data[member.offset_data: member.offset_data + member.size]
        while body:
            body = body[os.write(fd, body):]
        os.fchmod(fd, file_mode(member.mode))
        # mtimes matter: .pyc files are checked against their source's mtime.
        os.utime(fd, (member.mtime, member.mtime))
    finally:
        os.close(fd)
