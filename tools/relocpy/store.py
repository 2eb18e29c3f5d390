"""The versions directory: where installed interpreters live, and the one
module that changes it.

    <versions>/cpython-3.13.15[+variant]          symlink -> .store/<name>-<random>/python
    <versions>/.store/<name>-<random>/python/     the archive's python/ tree
    <versions>/.store/<name>-<random>/RELOCPY.json  the receipt
    <versions>/.staging-<random>/                 an install being unpacked (locked while its process lives)
    <versions>/.lock                              held while any of the above changes; says who holds it

Every archive member lands under python/, so the receipt, beside that tree,
is somewhere no member can be or point to; it is written with O_EXCL and
O_NOFOLLOW all the same. A version is swapped in or out by one rename of its
link, so a reader sees the old tree or the new one. Trees are deleted only as
`.store` entries named by a link's own text, never wherever a link resolves
to. The next install or uninstall sweeps what a killed one left: staging
dirs whose lock is free, store entries no link names, half-made links.
Links made by relocpy before the receipt moved beside the tree point at the
store entry itself (`.store/<entry>`, receipt inside): they are still read.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath

from packaging.version import InvalidVersion, Version
from pydantic import ValidationError

from relocpy.errors import InstallError
from relocpy.models import ArtifactKey
from relocpy.progress import warn
from relocpy.unpack import ROOT

STORE = ".store"
RECEIPT = "RELOCPY.json"
LOCK = ".lock"
STAGING_PREFIX = ".staging-"
LINK_SUFFIX = ".link"
MAX_RECEIPT_BYTES = 1 << 20
NAME_RE = re.compile(r"^cpython-(?P<version>[^+/]+)(?:\+(?P<variant>[^/]+))?$")
NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class Installed:
    name: str
    version: str
    variant: str | None  # as asked for at install (the link's name), not the build's own
    prefix: Path  # the version link: stable across reinstalls
    problem: str | None = None  # why it cannot be used, for a broken install

    @property
    def python(self) -> Path:
        return self.prefix / "bin" / "python3"


class Store:
    def __init__(self, versions: Path, lock_timeout: float = 300.0):
        self.versions = versions
        self.store = versions / STORE
        self.lock_timeout = lock_timeout

    # --- reading -----------------------------------------------------------------

    def installed(self) -> list[Installed]:
        """Every version link, newest first; a broken one says why in .problem."""
        if not self.versions.is_dir():
            return []
        found = [item for link in sorted(self.versions.iterdir()) if (item := self._read(link)) is not None]
        return sorted(found, key=lambda item: Version(item.version), reverse=True)

    def get(self, name: str) -> Installed | None:
        return self._read(self.versions / name)

    def _read(self, link: Path) -> Installed | None:
        """The install a link stands for, or None if the link is not an install's."""
        named = NAME_RE.match(link.name)
        if not named or not link.is_symlink() or not _is_version(named["version"]):
            return None
        def broken(problem: str) -> Installed:  # known by its link's name alone
            return Installed(link.name, named["version"], named["variant"], link, problem)

        entry = self.entry_of(link)
        if entry is None:
            return broken(f"it points to {os.readlink(link)}, not to an entry of {self.store}")
        try:
            key = read_receipt(entry / RECEIPT)
        except ValueError as exc:
            return broken(str(exc))
        if not _is_version(key.version):
            return broken(f"its receipt {entry / RECEIPT} is corrupt")
        # The variant asked for, as the link names it: a CPU-level build
        # (key.variant pgo+lto+x86_64_v3) installed for `3.13` is `3.13`'s.
        return Installed(link.name, key.version, named["variant"], link)

    def entry_of(self, link: Path) -> Path | None:
        """The `.store` entry a link names by its own text (never by resolving
        it), if that entry is a real directory; None for anything else."""
        try:
            target = PurePosixPath(os.readlink(link))
        except OSError:
            return None
        if target.is_absolute():  # made by hand: accept it only when it spells a path in this store
            try:
                target = target.relative_to(self.versions)
            except ValueError:
                return None
        parts = target.parts  # .store/<entry>/python, or .store/<entry> from before the receipt moved
        if not (len(parts) in (2, 3) and parts[0] == STORE and parts[1] not in (".", "..")
                and parts[2:] in ((), (ROOT,))):
            return None
        entry = self.store / parts[1]
        return entry if entry.is_dir() and not entry.is_symlink() and not self.store.is_symlink() else None

    # --- changing -----------------------------------------------------------------

    @contextmanager
    def staging(self, doing: str):
        """A fresh dir to unpack into, locked while this process lives (so a
        sweep can tell it from a leftover); removed at the end unless committed."""
        with self.locked(doing):
            self.sweep()
            path = self.versions / f"{STAGING_PREFIX}{uuid.uuid4().hex[:12]}"
            try:
                path.mkdir()
                fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError as exc:
                raise InstallError(f"cannot write to {self.versions}: {exc.strerror}") from None
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield path
        finally:
            remove_tree(path)
            os.close(fd)

    def commit(self, name: str, staging: Path, receipt: dict) -> None:
        """Write the receipt beside the checked tree, move both into the store
        and swap the version link to them in one rename."""
        with self.locked(f"install {name}"), self._failing_as_one_line():
            write_new_file(staging / RECEIPT, (json.dumps(receipt, indent=2) + "\n").encode())
            link = self.versions / name
            if os.path.lexists(link) and not link.is_symlink():
                raise InstallError(f"{link} exists and is not a link relocpy made; move it away first")
            old = self.entry_of(link)
            foreign = link.is_symlink() and old is None
            entry = self.store / f"{name}-{uuid.uuid4().hex[:12]}"
            self.store.mkdir(exist_ok=True)
            staging.rename(entry)
            swap_link(link, f"{STORE}/{entry.name}/{ROOT}")
            if old is not None:
                remove_tree(old)
            elif foreign:
                warn(f"{link} did not point to an entry of {self.store}: replaced the link, left its target alone")

    def remove(self, name: str) -> None:
        with self.locked(f"uninstall {name}"), self._failing_as_one_line():
            link = self.versions / name
            if not link.is_symlink():  # removed by another uninstall meanwhile
                raise InstallError(f"{name} is not installed in {self.versions}")
            old = self.entry_of(link)
            link.unlink()  # the link goes first: the version vanishes in one step
            if old is not None:
                remove_tree(old)
            else:
                warn(f"{link} did not point to an entry of {self.store}: removed the link, left its target alone")
            self.sweep()

    @contextmanager
    def _failing_as_one_line(self):
        """A file system error half-way (a full disk...) is one line; what it
        left behind is swept next time."""
        try:
            yield
        except OSError as exc:
            raise InstallError(f"cannot change {self.versions}: {exc.strerror or exc}") from None

    def sweep(self) -> None:
        """Remove what killed installers left behind. Call with the lock held."""
        for path in self.versions.glob(f"{STAGING_PREFIX}*"):
            if abandoned(path):
                remove_tree(path)
        for path in self.versions.glob(f".*{LINK_SUFFIX}"):
            if path.is_symlink():
                remove_tree(path)
        if self.store.is_dir() and not self.store.is_symlink():
            named = {self.entry_of(link) for link in self.versions.iterdir() if link.is_symlink()}
            for entry in self.store.iterdir():
                if entry not in named:
                    remove_tree(entry)

    # --- the lock -------------------------------------------------------------------

    @contextmanager
    def locked(self, doing: str):
        """One process at a time changes the versions dir. A process that has
        to wait says whom it waits for, and gives up after lock_timeout."""
        path = self.versions / LOCK
        try:
            self.versions.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise InstallError(f"cannot write to {self.versions}: {exc.strerror}") from None
        try:
            self._wait_for(fd, path)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"relocpy (pid {os.getpid()}, {doing}, since {datetime.now():%H:%M:%S})\n".encode(), 0)
            yield
        finally:
            os.close(fd)

    def _wait_for(self, fd: int, path: Path) -> None:
        if try_lock(fd):
            return
        holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another relocpy"
        warn(f"waiting for {holder} to release {path} (at most {self.lock_timeout:g} s: RELOCPY_LOCK_TIMEOUT)")
        deadline = time.monotonic() + self.lock_timeout
        while not try_lock(fd):
            if time.monotonic() >= deadline:
                raise InstallError(f"{holder} still holds {path} after {self.lock_timeout:g} s; nothing changed "
                                   "(stop that process, or wait longer with RELOCPY_LOCK_TIMEOUT)")
            time.sleep(0.1)


def _is_version(text: str) -> bool:
    try:
        Version(text)
    except InvalidVersion:
        return False
    return True


def read_receipt(path: Path) -> ArtifactKey:
    """The key a receipt records; ValueError saying why it cannot be read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as handle:
            data = handle.read(MAX_RECEIPT_BYTES + 1)
    except OSError as exc:
        reason = "it is a symlink" if exc.errno == errno.ELOOP else exc.strerror
        raise ValueError(f"its receipt {path} cannot be read ({reason})") from None
    try:
        if len(data) > MAX_RECEIPT_BYTES:
            raise ValueError("too large")
        return ArtifactKey.model_validate(json.loads(data)["key"])
    except (ValueError, KeyError, TypeError, ValidationError):
        raise ValueError(f"its receipt {path} is corrupt") from None


def try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def abandoned(staging: Path) -> bool:
    """A staging dir whose lock is free: its installer is gone."""
    try:
        fd = os.open(staging, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return staging.is_symlink() or staging.is_file()  # not a dir we made
    try:
        return try_lock(fd)
    finally:
        os.close(fd)


def swap_link(link: Path, target: str) -> None:
    tmp = link.with_name(f".{link.name}.{uuid.uuid4().hex}{LINK_SUFFIX}")
    tmp.symlink_to(target)
    os.replace(tmp, link)


def write_new_file(path: Path, data: bytes) -> None:
    """Create path and write it: never through a link, never over a file."""
    fd = os.open(path, NEW_FILE, 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def remove_tree(path: Path) -> None:
    """Remove a dir we made (or whatever took its name), not following links."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)
