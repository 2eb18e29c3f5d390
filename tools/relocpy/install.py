"""Install interpreters from a verified index into a versions directory.

Layout: `<versions>/cpython-3.13.15[+variant]` is a symlink to
`<versions>/.store/<name>-<random>`, the unpacked `python/` prefix. A new
install or a reinstall is unpacked and checked aside, then the symlink is
swapped with one rename, so a reader sees the old prefix or the new one,
never a half-written one.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from packaging import tags
from packaging.version import Version

from relocpy.errors import InstallError, RelocpyError
from relocpy.fetch import fetch_all
from relocpy.index import Index, IndexEntry
from relocpy.index_trust import fetch_verified, resolve_url
from relocpy.models import ArtifactKey, Platform, SourceFile, version_tuple
from relocpy.progress import info
from relocpy.settings import ClientSettings
from relocpy.unpack import StreamInflater, unpack

SPEC_RE = re.compile(r"^(?:cpython[@-])?(?P<version>\d+\.\d+(?:\.\d+)?)$")
DEFAULT_FLAVORS = ("install_only_stripped", "install_only")
STORE = ".store"
RECEIPT = "RELOCPY.json"
MAX_INFLATION = 16  # real archives inflate 3-4x; a stream inflating more is inflated again from the file


@dataclass(frozen=True)
class Request:
    release: tuple[int, ...]  # (3, 13) or (3, 13, 15)
    variant: str | None = None

    @classmethod
    def parse(cls, spec: str, variant: str | None = None) -> Request:
        match = SPEC_RE.match(spec.strip())
        if not match:
            raise RelocpyError(f"bad version spec {spec!r}: use 3.13, 3.13.15 or cpython@3.13")
        return cls(tuple(int(p) for p in match.group("version").split(".")), variant or None)

    def matches(self, version: str, variant: str | None) -> bool:
        release = Version(version).release
        return release[: len(self.release)] == self.release and variant == self.variant

    def __str__(self) -> str:
        text = "cpython " + ".".join(map(str, self.release))
        return text + (f" ({self.variant})" if self.variant else "")


# --- choosing -------------------------------------------------------------------


def host_platforms() -> list[Platform]:
    """What this host runs, per (os, arch, libc) the highest floor, best first.

    packaging knows how to ask the host (glibc and musl versions, macOS
    versions); its tags are read back into Platform by the one tag reader."""
    best: dict[tuple[str, str, str], Platform] = {}
    for tag in tags.platform_tags():
        try:
            platform = Platform.from_tag(tag)
        except ValueError:
            continue  # linux_x86_64 and other tags no relocpy artifact carries
        kind = (platform.os, platform.arch, platform.libc)
        if kind not in best or version_tuple(platform.floor) > version_tuple(best[kind].floor):
            best[kind] = platform
    return list(best.values())


def fits_host(entry: IndexEntry, hosts: list[Platform]) -> bool:
    return any(entry.platform.runs_on(host) for host in hosts)


def choose(index: Index, request: Request, flavor: str | None, hosts: list[Platform]) -> IndexEntry:
    flavors = (flavor,) if flavor else DEFAULT_FLAVORS
    fits = [
        e for e in index.artifacts
        if e.key.implementation == "cpython" and request.matches(e.python_version, e.variant)
        and e.flavor in flavors and fits_host(e, hosts)
    ]
    if not fits:
        raise InstallError(_nothing_fits(index, request, flavors, hosts))

    def order(e: IndexEntry):
        # Newest version, then the newest floor this host runs (the most
        # specific build), then the newest build, then the preferred flavor.
        return (Version(e.python_version), version_tuple(e.platform.floor or "0"), e.build_tag, -flavors.index(e.flavor))

    return max(fits, key=order)


def _nothing_fits(index: Index, request: Request, flavors, hosts: list[Platform]) -> str:
    same = [e for e in index.artifacts if request.matches(e.python_version, e.variant)]
    if not same:
        return f"no {request} in the index"
    seen = sorted({f"{e.key.platform_tag}/{e.flavor}" for e in same})
    here = hosts[0].tag if hosts else "unknown platform"
    return (
        f"no {request} artifact fits this host ({here}, flavors {', '.join(flavors)}); "
        f"the index has: {', '.join(seen)}"
    )


# --- installing -------------------------------------------------------------------


def install_name(version: str, variant: str | None) -> str:
    return f"cpython-{version}" + (f"+{variant}" if variant else "")


@contextmanager
def locked(versions: Path):
    """One installer at a time swaps links in a versions dir."""
    versions.mkdir(parents=True, exist_ok=True)
    with (versions / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def smoke_test(prefix: Path) -> None:
    python = prefix / "bin" / "python3"
    try:
        result = subprocess.run([str(python), "-c", "import sys, encodings"], capture_output=True, timeout=60)
    except subprocess.TimeoutExpired:
        raise InstallError("the unpacked interpreter does not start: no answer in 60 s; nothing installed") from None
    except OSError as exc:
        raise InstallError(f"the unpacked interpreter does not start: {exc.strerror}; nothing installed") from None
    if result.returncode != 0:
        raise InstallError(f"the unpacked interpreter does not start: {_exit_reason(result)}; nothing installed")


def _exit_reason(result: subprocess.CompletedProcess) -> str:
    """The exit status and the last lines of stderr, on one line."""
    code = result.returncode
    status = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
    tail = result.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
    return status + (": " + " | ".join(line.strip() for line in tail) if tail else "")


def download(entry: IndexEntry, source: str, settings: ClientSettings) -> tuple[Path, bytes | None]:
    """Into the content-addressed cache, sha256 checked while streaming (fetch.py).

    The bytes are inflated on a second thread as they arrive; the result is
    only used after fetch_all has verified the sha256 (it raises otherwise).
    """
    pinned = SourceFile(file=entry.name, sha256=entry.sha256, urls=[resolve_url(source, entry.url)])
    inflater = StreamInflater(limit=entry.size * MAX_INFLATION)
    try:
        path = fetch_all([(entry.name, [pinned])], settings.fetch, sink=inflater)[0].path
    finally:
        raw = inflater.result(entry.size)
    return path, raw


def place(versions: Path, name: str, prefix: Path, receipt: dict) -> None:
    """Move the checked prefix into the store and swap the link to it in one rename."""
    (prefix / RECEIPT).write_text(json.dumps(receipt, indent=2) + "\n")
    store = versions / STORE / f"{name}-{uuid.uuid4().hex[:12]}"
    store.parent.mkdir(parents=True, exist_ok=True)
    prefix.rename(store)
    link = versions / name
    old = link.resolve() if link.is_symlink() else None
    tmp_link = versions / f".{name}.{uuid.uuid4().hex}.link"
    tmp_link.symlink_to(Path(STORE) / store.name)
    os.replace(tmp_link, link)
    if old is not None and old != store:
        shutil.rmtree(old, ignore_errors=True)


def install(
    spec: str, settings: ClientSettings, variant: str | None = None, flavor: str | None = None,
    reinstall: bool = False,
) -> Path:
    request = Request.parse(spec, variant)
    source, index = fetch_index(settings)
    entry = choose(index, request, flavor, host_platforms())
    name = install_name(entry.python_version, entry.variant)
    versions = settings.install_dir
    if (versions / name).is_symlink() and not reinstall:
        info(f"{name} is already installed in {versions} (--reinstall to replace it)")
        return versions / name
    archive, raw = download(entry, source, settings)
    versions.mkdir(parents=True, exist_ok=True)
    staging = versions / f".staging-{uuid.uuid4().hex[:12]}"
    try:
        prefix = unpack(archive, staging, raw)
        smoke_test(prefix)
        receipt = {"key": entry.key.model_dump(mode="json"), "entry": entry.model_dump(mode="json"),
                   "index": source, "serial": index.serial}
        with locked(versions):
            place(versions, name, prefix, receipt)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    info(f"installed {entry.name} as {versions / name}")
    return versions / name


def fetch_index(settings: ClientSettings) -> tuple[str, Index]:
    if not settings.index_url:
        raise RelocpyError("no index: pass --index URL, set RELOCPY_INDEX_URL or index_url in the config file")
    return fetch_verified(settings.index_url, settings)


# --- what is installed -----------------------------------------------------------


@dataclass(frozen=True)
class Installed:
    name: str
    version: str
    variant: str | None
    prefix: Path

    @property
    def python(self) -> Path:
        return self.prefix / "bin" / "python3"


def installed(versions: Path) -> list[Installed]:
    found = []
    if not versions.is_dir():
        return found
    for link in sorted(versions.iterdir()):
        receipt = link / RECEIPT
        if not link.is_symlink() or not receipt.is_file():
            continue
        key = ArtifactKey.model_validate(json.loads(receipt.read_text())["key"])
        found.append(Installed(link.name, key.version, key.variant, link))
    return sorted(found, key=lambda i: Version(i.version), reverse=True)


def find_installed(spec: str, versions: Path, variant: str | None = None) -> Installed:
    request = Request.parse(spec, variant)
    for item in installed(versions):
        if request.matches(item.version, item.variant):
            return item
    raise InstallError(f"{request} is not installed in {versions} (relocpy install {spec})")


def uninstall(spec: str, versions: Path, variant: str | None = None) -> Installed:
    item = find_installed(spec, versions, variant)
    with locked(versions):
        store = item.prefix.resolve()
        item.prefix.unlink()  # the link goes first: the version vanishes in one step
        shutil.rmtree(store, ignore_errors=True)
    return item
