"""Unpack an archive into a staging directory, as a stream, in bounded memory.

The archive is read once, front to back: decompressed a chunk at a time, its
tar headers parsed here (tarfile parses each 512-byte header block; the
extended headers relocpy's archives use, GNU long names and pax records, are
read by this module with a size cap), and each member checked as it comes.
Directories and regular files are written at once; links are made only at the
end, after the whole member list has been checked (links through links,
members under a symlink), so no write can pass through a link the archive
made. A refused archive leaves files in the staging directory only, which the
caller removes.

Memory does not grow with the archive: one chunk of compressed and inflated
bytes, one extended header (capped), and a short record per member (the
member count is capped). Total inflated bytes are capped too, by a ratio of
the compressed size and by an absolute limit, so a decompression bomb stops
after writing at most that much into staging.

Everything the tar format could hide is refused rather than guessed at: a
corrupt header anywhere, a member list that ends without the end-of-archive
marker, anything but zeros after it, sparse files, global pax headers,
non-finite or out-of-range times.
"""

from __future__ import annotations

import math
import os
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Iterator

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
CHUNK = 1 << 20
MAX_ZSTD_WINDOW = 1 << 25  # relocpy packs at level 12 (a 4 MiB window); level 19 takes 8 MiB
BLOCK = tarfile.BLOCKSIZE
ZERO_BLOCK = bytes(BLOCK)
MAX_MTIME = 2**33  # year 2242; a signed artifact stamped later than this is broken, not old
EXTENDED_TYPES = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.SOLARIS_XHDTYPE)
PAX_FIELDS = {"path": "name", "linkpath": "linkname", "size": "size", "mtime": "mtime"}  # the rest is ignored


@dataclass(frozen=True)
class Limits:
    """How far an archive may go before it is refused as a bomb."""

    ratio: int = 16  # real archives inflate 3-5x
    floor: int = 1 << 20  # tiny archives inflate more (a tar is padded to 10 KiB): allow this much whatever the ratio
    absolute: int = 4 << 30  # whatever the compressed size
    members: int = 100_000  # a full CPython tree, tests included, has about 10,000
    extended_header: int = 1 << 20  # one pax or GNU long-name header

    def inflated_bytes(self, compressed_size: int) -> int:
        return min(self.absolute, max(self.floor, self.ratio * compressed_size))


LIMITS = Limits()


def unpack(archive: Path, dest: Path, limits: Limits = LIMITS) -> Path:
    """Check and write every member under dest; returns dest/python, which
    must hold bin/python3 (an install_only archive). dest is a staging dir that
    the caller discards if anything fails."""
    prefix = extract(archive, dest, limits)
    if not (prefix / "bin" / "python3").exists():
        raise InstallError(f"{archive.name}: no {ROOT}/bin/python3 in the archive")
    return prefix


def extract(archive: Path, dest: Path, limits: Limits = LIMITS) -> Path:
    """unpack, for any flavor: returns dest/python, whatever it holds."""
    try:
        with archive.open("rb") as compressed:
            stream = Inflated(decompressor(compressed, archive.name), limits.inflated_bytes(archive.stat().st_size),
                              archive.name)
            write_all(read_members(stream, limits), stream, dest)
    except OSError as exc:
        raise InstallError(f"{archive.name}: cannot unpack: {exc.strerror or exc}") from None
    except (EOFError, zlib.error, inflate_lib.error) as exc:
        raise InstallError(f"{archive.name}: cannot unpack: {exc}") from None
    except Exception as exc:
        if type(exc).__name__ == "ZstdError":  # without importing zstandard up front
            raise InstallError(f"{archive.name}: cannot unpack: {exc}") from None
        raise
    return dest / ROOT


# --- decompressing --------------------------------------------------------------------


def decompressor(compressed: BinaryIO, label: str):
    """A reader of the archive's tar bytes (read(n) gives at most n): gzip or zstd."""
    magic = compressed.read(4)
    compressed.seek(0)
    if magic.startswith(GZIP_MAGIC):
        return Gunzip(compressed)
    if magic == ZSTD_MAGIC or is_skippable_frame(magic):
        zstandard = require("build", "zstandard")  # only the full flavor uses zstd
        # The window is what a frame makes the decoder hold: capped below zstd's own 128 MiB default.
        decoder = zstandard.ZstdDecompressor(max_window_size=MAX_ZSTD_WINDOW)
        # Across frames: pzstd writes one frame per chunk of input.
        return decoder.stream_reader(compressed, read_across_frames=True, closefd=False)
    raise InstallError(f"{label}: cannot unpack: neither gzip nor zstd")


def is_skippable_frame(magic: bytes) -> bool:
    """zstd skippable frames (0x184D2A50-5F, little-endian): pzstd puts one before each frame."""
    return len(magic) == 4 and magic[1:] == b"\x2a\x4d\x18" and magic[0] & 0xF0 == 0x50


class Gunzip:
    """gzip members one after another, zero padding between them allowed, n bytes at a time.

    The inflater's own max_length keeps each step's output small however
    well the input compresses; its CRC check runs at the end of each member.
    """

    def __init__(self, source: BinaryIO):
        self.source = source
        self.inflater = inflate_lib.decompressobj(wbits=31)
        self.pending = b""  # compressed bytes the inflater has not taken yet

    def read(self, size: int) -> bytes:
        while True:
            if not self.pending:
                self.pending = self.source.read(CHUNK)
                if not self.pending:
                    if self.inflater.eof:
                        return b""
                    raise EOFError("compressed data ends early")
            if self.inflater.eof:  # between members
                self.pending = self.pending.lstrip(b"\0")
                if not self.pending:
                    continue
                self.inflater = inflate_lib.decompressobj(wbits=31)
            out = self.inflater.decompress(self.pending, size)
            self.pending = self.inflater.unused_data if self.inflater.eof else self.inflater.unconsumed_tail
            if out:
                return out


class Inflated:
    """The tar bytes, counted: refuses the archive once they pass `limit`."""

    def __init__(self, reader, limit: int, label: str):
        self.reader, self.limit, self.label = reader, limit, label
        self.position = 0

    def read(self, size: int) -> bytes:
        data = self.reader.read(size)
        self.position += len(data)
        if self.position > self.limit:
            raise refuse(f"{self.label} inflates to more than {self.limit} bytes (a decompression bomb?)")
        return data

    def read_exact(self, size: int) -> bytes:
        parts, left = [], size
        while left and (data := self.read(min(left, CHUNK))):
            parts.append(data)
            left -= len(data)
        return b"".join(parts)

    def skip_to(self, position: int) -> None:
        while self.position < position and self.read(min(position - self.position, CHUNK)):
            pass


# --- reading tar headers --------------------------------------------------------------


def refuse(message: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(f"{message}; refusing the archive")


def read_members(stream: Inflated, limits: Limits) -> Iterator[tarfile.TarInfo]:
    """Each member's header with its extended headers applied. Before asking
    for the next one, the caller may read the member's data from the stream."""
    extended: dict[str, object] = {}
    count = 0
    while True:
        offset = stream.position
        block = stream.read_exact(BLOCK)
        if len(block) < BLOCK:
            raise refuse(f"{stream.label}: the tar ends at byte {offset} without its end-of-archive marker (truncated)")
        if block == ZERO_BLOCK:
            if extended:
                raise refuse(f"{stream.label}: an extended header at the end of the tar describes no member")
            expect_only_zeros(stream)
            return
        try:
            member = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        except tarfile.HeaderError as exc:
            raise refuse(f"{stream.label}: corrupt tar header at byte {offset} ({exc})") from None
        if member.type in EXTENDED_TYPES:
            extended.update(read_extended(stream, member, limits))
            continue
        for field, value in extended.items():
            setattr(member, field, value)
        extended = {}
        if member.size < 0:
            raise refuse(f"{stream.label}: tar header at byte {offset} has a negative size")
        count += 1
        if count > limits.members:
            raise refuse(f"{stream.label} has more than {limits.members} members")
        start = stream.position
        yield member
        stream.skip_to(start + padded(member.size if member.isreg() else 0))


def padded(size: int) -> int:
    return -(-size // BLOCK) * BLOCK


def expect_only_zeros(stream: Inflated) -> None:
    """After the end-of-archive marker only zero padding may follow, to the end."""
    while data := stream.read(CHUNK):
        if data.count(0) != len(data):
            raise refuse(f"{stream.label}: data after the tar's end-of-archive marker")


def read_extended(stream: Inflated, header: tarfile.TarInfo, limits: Limits) -> dict[str, object]:
    """The fields a GNU long-name or pax header sets on the member after it."""
    if not 0 <= header.size <= limits.extended_header:
        raise refuse(f"{stream.label}: an extended tar header of {header.size} bytes "
                     f"(at most {limits.extended_header})")
    data = stream.read_exact(padded(header.size))[: header.size]
    if len(data) < header.size:
        raise refuse(f"{stream.label}: the tar ends inside an extended header (truncated)")
    if header.type == tarfile.GNUTYPE_LONGNAME:
        return {"name": text(data.split(b"\0", 1)[0])}
    if header.type == tarfile.GNUTYPE_LONGLINK:
        return {"linkname": text(data.split(b"\0", 1)[0])}
    return pax_fields(data, stream.label)


def text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def pax_fields(data: bytes, label: str) -> dict[str, object]:
    """Records `<length> <key>=<value>\\n`; path, linkpath, size and mtime are applied."""
    fields: dict[str, object] = {}
    pos = 0
    while pos < len(data):
        length_text, _, _ = data[pos:pos + 20].partition(b" ")
        if not length_text.isdigit() or int(length_text) <= len(length_text) + 1:
            raise refuse(f"{label}: malformed pax record at byte {pos} of an extended header")
        record = data[pos:pos + int(length_text)]
        key, equals, value = record[len(length_text) + 1:-1].partition(b"=")
        if len(record) != int(length_text) or not record.endswith(b"\n") or not equals:
            raise refuse(f"{label}: malformed pax record at byte {pos} of an extended header")
        name = text(key)
        if name.startswith("GNU.sparse."):
            raise refuse(f"{label}: a sparse file (pax {name})")
        if name in PAX_FIELDS:
            fields[PAX_FIELDS[name]] = pax_value(name, text(value), label)
        pos += len(record)
    return fields


def pax_value(name: str, value: str, label: str) -> object:
    try:
        if name == "size":
            return int(value)
        if name == "mtime":
            return float(value)
    except ValueError:
        raise refuse(f"{label}: pax {name} {value!r} is not a number") from None
    return value


# --- checking ------------------------------------------------------------------------


def check_name(name: str) -> PurePosixPath:
    if "\0" in name:
        raise refuse(f"archive member {name!r} has a NUL byte in its name")
    path = PurePosixPath(name)
    if path.is_absolute():
        raise refuse(f"archive member {name!r} is an absolute path")
    if ".." in path.parts:
        raise refuse(f"archive member {name!r} contains '..'")
    if not path.parts or path.parts[0] != ROOT:
        raise refuse(f"archive member {name!r} is outside {ROOT}/")
    return path


def check_type(member: tarfile.TarInfo) -> None:
    if member.isdev():
        raise refuse(f"archive member {member.name!r} is a device or fifo")
    # isreg() counts GNU sparse members in (tarfile unpacks them): their data is a map, not the file.
    sparse = member.type == tarfile.GNUTYPE_SPARSE
    if sparse or not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
        raise refuse(f"archive member {member.name!r} has an unsupported type")
    if member.size and not member.isreg():
        raise refuse(f"archive member {member.name!r} is a link or directory with data")


def check_times(member: tarfile.TarInfo) -> None:
    if not (math.isfinite(member.mtime) and 0 <= member.mtime < MAX_MTIME):
        raise refuse(f"archive member {member.name!r} has an impossible mtime ({member.mtime})")


@dataclass(frozen=True)
class Link:
    path: PurePosixPath
    target: str
    symbolic: bool


class Checker:
    """Checks members as they stream by, then the tree as a whole.

    It keeps one short record per member: the kind of each path (for
    duplicates and hard-link targets) and the links, which are made last.
    """

    def __init__(self):
        self.kinds: dict[str, bytes] = {}  # str, not PurePosixPath: a third of the memory
        self.links: list[Link] = []

    def add(self, member: tarfile.TarInfo) -> str:
        """The member's path, normalized, once it passed every check of its own."""
        check_type(member)
        check_times(member)
        path = check_name(member.name)
        key = str(path)
        earlier = self.kinds.get(key)
        if earlier is not None and not (earlier == tarfile.DIRTYPE and member.isdir()):
            raise refuse(f"archive member {member.name!r} appears twice")
        self.kinds[key] = tarfile.DIRTYPE if member.isdir() else tarfile.REGTYPE if member.isreg() else member.type
        if member.issym() or member.islnk():
            if "\0" in member.linkname:
                raise refuse(f"link {member.name!r} has a NUL byte in its target")
            self.links.append(Link(path, member.linkname, member.issym()))
        return key

    def links_to_make(self) -> list[Link]:
        """Refuse the archive unless every member lands inside python/ and stays there."""
        symlinks = {link.path: link.target for link in self.links if link.symbolic}
        if symlinks:
            for path in self.kinds:
                # Writing through a symlinked directory could land anywhere: refuse the shape outright.
                if any(parent in symlinks for parent in PurePosixPath(path).parents):
                    raise refuse(f"archive member {path!r} lies under a symlink")
        for link in self.links:
            if link.symbolic:
                check_symlink(link, symlinks)
            elif self.kinds.get(str(PurePosixPath(link.target))) != tarfile.REGTYPE:
                raise refuse(f"hard link {str(link.path)!r} -> {link.target!r} points outside the archive's files")
        return self.links


def check_symlink(link: Link, symlinks: dict) -> None:
    """Resolve the link through the archive's own links, as the kernel would later."""
    if PurePosixPath(link.target).is_absolute() or resolve(link.path.parent, link.target, symlinks, 0) is None:
        raise refuse(f"symlink {str(link.path)!r} -> {link.target!r} points outside the archive")


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


# --- writing -------------------------------------------------------------------------


def file_mode(mode: int) -> int:
    """As tarfile's 'data' filter: no setuid/setgid/sticky, no group/other write, owner rw."""
    mode = (mode & 0o755) | 0o600
    return mode if mode & 0o100 else mode & ~0o111


def write_all(members: Iterator[tarfile.TarInfo], stream: Inflated, dest: Path) -> None:
    """Dirs and files as they come (no link exists yet to write through), links at the end."""
    dest.mkdir(parents=True, exist_ok=True)
    root = str(dest)
    checker = Checker()
    for member in members:
        path = os.path.join(root, checker.add(member))
        if member.isdir():
            # Modes of dirs are not applied: a read-only dir would block its own members.
            os.makedirs(path, exist_ok=True)
        elif member.isreg():
            write_file(path, member, stream)
    for link in checker.links_to_make():
        path = os.path.join(root, link.path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if link.symbolic:
            os.symlink(link.target, path)
        else:
            os.link(os.path.join(root, PurePosixPath(link.target)), path, follow_symlinks=False)


def write_file(path: str, member: tarfile.TarInfo, stream: Inflated) -> None:
    try:
        fd = os.open(path, WRITE_FLAGS, 0o600)
    except FileNotFoundError:  # a file whose directory has no entry of its own
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, WRITE_FLAGS, 0o600)
    try:
        left = member.size
        while left:
            data = stream.read(min(left, CHUNK))
            if not data:
                raise refuse(f"{stream.label}: the tar ends inside {member.name!r} (truncated)")
            left -= len(data)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        os.fchmod(fd, file_mode(member.mode))
        # mtimes matter: .pyc files are checked against their source's mtime.
        os.utime(fd, (member.mtime, member.mtime))
    finally:
        os.close(fd)
