"""sha256 of files, read in chunks (archives are tens of MB), and of whole trees."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def tree_sha256(root: Path) -> str:
    """One sha256 over a directory tree, links not followed: each entry's
    path, kind and permission bits, with a file's content or a link's target,
    in a fixed order. Equal digests: the same tree, byte for byte."""
    digest = hashlib.sha256()
    for top, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(dirs + files):
            path = Path(top) / name
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                kind, payload = b"l", os.fsencode(os.readlink(path))
            elif stat.S_ISREG(info.st_mode):
                kind, payload = b"f", file_sha256(path).encode()
            elif stat.S_ISDIR(info.st_mode):
                kind, payload = b"d", b""
            else:
                kind, payload = b"o", b""  # a fifo or a device: only that it is there
            mode = f"{stat.S_IMODE(info.st_mode):o}".encode()
            # NUL cannot occur in a path or a link target: the fields cannot run together.
            digest.update(b"\0".join((kind, os.fsencode(path.relative_to(root)), mode, payload)) + b"\0")
    return digest.hexdigest()
