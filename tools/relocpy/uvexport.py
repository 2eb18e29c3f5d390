"""The index in uv's download-metadata format.

uv reads a JSON object mapping a key to an entry with twelve fields, and
ignores the key. uv checks the sha256 but no signature, so the export is
made only from an index that verified. Per (version, os, arch, libc, variant)
one artifact is kept, preferring what uv itself prefers: stripped, then
plain install_only (the full flavor's `install/` layout is left out), newest
build first.
"""

from __future__ import annotations

import json

from packaging.version import InvalidVersion, Version

from relocpy.cpu import UV_LEVEL_NAMES, split_level
from relocpy.errors import IndexError_
from relocpy.index import Index, IndexEntry
from relocpy.models import Platform
from relocpy.index_trust import resolve_url

FLAVOR_PREFERENCE = {"install_only_stripped": 0, "install_only": 1}
UV_OS = {"linux": "linux", "macos": "darwin", "windows": "windows"}
UV_LIBC = {"glibc": "gnu", "musl": "musl", "none": "none"}
UV_ARCHES = {"x86_64", "aarch64", "i686"}


def platform_fields(platform: Platform) -> tuple[str, str, str] | None:
    """(os, arch family, libc) as uv names them, or None when uv has no name for it."""
    if platform.arch not in UV_ARCHES:
        return None
    return UV_OS[platform.os], platform.arch, UV_LIBC[platform.libc]


def uv_variant(options: str) -> str | None:
    """uv knows freethreaded and debug builds; everything else is its default."""
    parts = set(options.split("+"))
    found = [name for name in ("freethreaded", "debug") if name in parts]
    return "+".join(found) or None


def uv_entry(entry: IndexEntry, source: str) -> tuple[str, dict] | None:
    fields = platform_fields(entry.platform)
    if fields is None or entry.flavor not in FLAVOR_PREFERENCE:
        return None
    try:
        version = Version(entry.python_version)
    except InvalidVersion:
        return None
    os_name, arch, libc = fields
    variant = uv_variant(entry.build_options)
    level = UV_LEVEL_NAMES.get(split_level(entry.build_options)[1] or "")
    prerelease = "".join(map(str, version.pre)) if version.pre else ""
    release = f"{version.major}.{version.minor}.{version.micro}{prerelease}"
    key = f"cpython-{release}{'+' + variant if variant else ''}-{os_name}-{arch}{'_' + level if level else ''}-{libc}"
    return key, {
        "name": "cpython",
        "arch": {"family": arch, "variant": level},
        "os": os_name,
        "libc": libc,
        "major": version.major,
        "minor": version.minor,
        "patch": version.micro,
        "prerelease": prerelease,
        "url": resolve_url(source, entry.url),
        "sha256": entry.sha256,
        "variant": variant,
        "build": entry.build_tag,
    }


def _rank(entry: IndexEntry) -> tuple:
    # uv has one default build per key: the target's own (unnamed) default
    # first, whatever other optimisation variants (lto, noopt) the index has.
    default = entry.variant is None or split_level(entry.variant)[0] == ""
    return (not default, FLAVOR_PREFERENCE.get(entry.flavor, 9), _negated(entry.build_tag))


def _negated(text: str) -> tuple:
    return tuple(-ord(c) for c in text)


def export(index: Index, source: str) -> dict[str, dict]:
    chosen: dict[str, tuple[tuple, dict]] = {}
    for entry in index.artifacts:
        converted = uv_entry(entry, source)
        if converted is None:
            continue
        key, body = converted
        rank = _rank(entry)
        if key not in chosen or rank < chosen[key][0]:
            chosen[key] = (rank, body)
    if not chosen:
        raise IndexError_("no artifact in the index has a form uv can install")
    # Sorted newest version first, as uv's own file is.
    ordered = sorted(chosen.items(), key=lambda kv: _version_key(kv[1][1]), reverse=True)
    return {key: body for key, (_, body) in ordered}


def _version_key(body: dict) -> tuple:
    return (body["major"], body["minor"], body["patch"], body["prerelease"] == "", body["prerelease"])


def export_bytes(index: Index, source: str) -> bytes:
    return (json.dumps(export(index, source), indent=2) + "\n").encode()
