"""Install interpreters from a verified index into a versions directory.

This module chooses what to install and gets it (index, download, unpack,
smoke test); store.py owns the versions directory itself: where a version
lives, its receipt, the lock, and swapping a version in or out.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from packaging import tags
from packaging.version import Version

from relocpy.cpu import host_levels, level_rank, split_level
from relocpy.errors import InstallError, RelocpyError
from relocpy.fetch import fetch_all
from relocpy.index import Index, IndexEntry
from relocpy.index_trust import fetch_verified, is_url, resolve_url
from relocpy.models import Platform, SourceFile, version_tuple
from relocpy.progress import info
from relocpy.settings import ClientSettings
from relocpy.store import Installed, Store
from relocpy.unpack import LIMITS, Limits, unpack

SPEC_RE = re.compile(r"^(?:cpython[@-])?(?P<version>\d+\.\d+(?:\.\d+)?)$")
DEFAULT_FLAVORS = ("install_only_stripped", "install_only")


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


def choose(index: Index, request: Request, flavor: str | None, hosts: list[Platform],
           cpu_levels: list[str] | None = None) -> IndexEntry:
    """The entry to install: a build for a CPU level (x86_64_v3) of the
    requested variant counts as that variant, on a host whose CPU has it."""
    flavors = (flavor,) if flavor else DEFAULT_FLAVORS
    levels = host_levels() if cpu_levels is None else cpu_levels
    serves = requested_variants(index)
    fits = [
        e for e in index.artifacts
        if e.key.implementation == "cpython" and _asked_for(request, e, serves)
        and e.flavor in flavors and fits_host(e, hosts) and split_level(e.build_options)[1] in (None, *levels)
    ]
    if not fits:
        raise InstallError(_nothing_fits(index, request, flavors, hosts))

    def order(e: IndexEntry):
        # Newest version, then the newest floor this host runs (the most
        # specific build), then the newest build, then the highest CPU level
        # the host runs, then the preferred flavor.
        return (Version(e.python_version), version_tuple(e.platform.floor or "0"), e.build_tag,
                level_rank(split_level(e.build_options)[1]), -flavors.index(e.flavor))

    return max(fits, key=order)


def _asked_for(request: Request, entry: IndexEntry, serves: dict[str, str | None]) -> bool:
    """The entry's own variant, or (a CPU-level build) the one it serves."""
    return any(request.matches(entry.python_version, variant) for variant in {entry.variant, serves[entry.name]})


def requested_variants(index: Index) -> dict[str, str | None]:
    """Per entry name, the variant a request names to get it: its own, or for
    a CPU-level build, the variant it is a level of (None: the unnamed
    default, when its other options are those of the unnamed build)."""
    unnamed = {(e.python_version, e.build_tag, e.key.platform): e.build_options
               for e in index.artifacts if e.variant is None}
    serves = {}
    for e in index.artifacts:
        rest, level = split_level(e.variant or "")
        if level is None:
            serves[e.name] = e.variant
        elif unnamed.get((e.python_version, e.build_tag, e.key.platform)) == rest:
            serves[e.name] = None
        else:
            serves[e.name] = rest or None
    return serves


def _nothing_fits(index: Index, request: Request, flavors, hosts: list[Platform]) -> str:
    serves = requested_variants(index)
    same = [e for e in index.artifacts if _asked_for(request, e, serves)]
    if not same:
        return f"no {request} in the index"
    seen = sorted({f"{e.key.platform_tag}/{e.flavor}" + (f" ({e.variant})" if e.variant != request.variant else "")
                   for e in same})
    here = hosts[0].tag if hosts else "unknown platform"
    return (
        f"no {request} artifact fits this host ({here}, flavors {', '.join(flavors)}); "
        f"the index has: {', '.join(seen)}"
    )


# --- installing -------------------------------------------------------------------


def install_name(version: str, variant: str | None) -> str:
    return f"cpython-{version}" + (f"+{variant}" if variant else "")


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


def artifact_location(source: str, entry: IndexEntry) -> str:
    """Where the entry's archive is. An index that came over http(s) can only
    send the client to http(s): never to a path on the client's own disk."""
    location = resolve_url(source, entry.url)
    if is_url(source) and not is_url(location):
        raise InstallError(f"{entry.name}: the index at {source} gives its URL as {entry.url!r}, which is not "
                           "http(s); refusing to read the local disk for a remote index")
    return location


def download(entry: IndexEntry, source: str, settings: ClientSettings) -> Path:
    """Into the content-addressed cache, sha256 checked while streaming and
    never more than the signed size written (fetch.py)."""
    if entry.size < 0:
        raise InstallError(f"{entry.name}: the index gives it a negative size ({entry.size}); refusing the entry")
    pinned = SourceFile(file=entry.name, sha256=entry.sha256, urls=[artifact_location(source, entry)])
    path = fetch_all([(entry.name, [pinned])], settings.fetch, max_size=entry.size)[0].path
    size = path.stat().st_size
    if size != entry.size:  # the sha256 matched, so the index itself is wrong
        raise InstallError(f"{entry.name}: {size} bytes, but the index says {entry.size}; refusing the entry")
    return path


def install(
    spec: str, settings: ClientSettings, variant: str | None = None, flavor: str | None = None,
    reinstall: bool = False,
) -> Path:
    request = Request.parse(spec, variant)
    source, index = fetch_index(settings)
    entry = choose(index, request, flavor, host_platforms())
    name = install_name(entry.python_version, request.variant)  # a CPU-level build installs as what was asked
    store = Store(settings.install_dir, settings.lock_timeout)
    current = store.get(name)
    if current is not None and current.problem is None and not reinstall:
        info(f"{name} is already installed in {store.versions} (--reinstall to replace it)")
        return current.prefix
    if current is not None and current.problem:
        info(f"{name} is broken ({current.problem}): installing it again")
    archive = download(entry, source, settings)
    receipt = {"key": entry.key.model_dump(mode="json"), "entry": entry.model_dump(mode="json"),
               "index": source, "serial": index.serial}
    install_archive(archive, name, receipt, store)
    info(f"installed {entry.name} as {store.versions / name}")
    return store.versions / name


def install_archive(archive: Path, name: str, receipt: dict, store: Store, limits: Limits = LIMITS) -> Path:
    """Unpack, start and swap in a verified archive as version `name`: the
    versions dir changes only if every step passed."""
    with store.staging(f"install {name}") as staging:
        prefix = unpack(archive, staging, limits)
        smoke_test(prefix)
        store.commit(name, staging, receipt)
    return store.versions / name


def fetch_index(settings: ClientSettings) -> tuple[str, Index]:
    if not settings.index_url:
        raise RelocpyError("no index: pass --index URL, set RELOCPY_INDEX_URL or index_url in the config file")
    return fetch_verified(settings.index_url, settings)


# --- what is installed -----------------------------------------------------------


def installed(versions: Path) -> list[Installed]:
    """Every version link in the versions dir, newest first; a broken one says why."""
    return Store(versions).installed()


def find_installed(spec: str, versions: Path, variant: str | None = None) -> Installed:
    request = Request.parse(spec, variant)
    for item in installed(versions):
        if request.matches(item.version, item.variant):
            if item.problem:
                raise InstallError(f"{item.name} in {versions} is broken: {item.problem} "
                                   f"(relocpy install {item.version} --reinstall, or relocpy uninstall {item.version})")
            return item
    raise InstallError(f"{request} is not installed in {versions} (relocpy install {spec})")


def uninstall(spec: str, settings: ClientSettings, variant: str | None = None) -> Installed:
    request = Request.parse(spec, variant)
    store = Store(settings.install_dir, settings.lock_timeout)
    for item in store.installed():
        if request.matches(item.version, item.variant):
            store.remove(item.name)
            return item
    raise InstallError(f"{request} is not installed in {store.versions}")
