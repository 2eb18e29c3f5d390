"""The publisher half of the index: entries from a dist directory, checked
against their archives, numbered after the published serial (read only once
it verified), and sealed with its signatures in one file."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote

from pydantic import ValidationError

from relocpy import keys
from relocpy.errors import IndexError_
from relocpy.hashing import file_sha256
from relocpy.index import INDEX_NAME, MAX_INDEX_BYTES, MAX_LIFETIME, Index, IndexEntry, next_serial, seal, write_atomic
from relocpy.index_trust import index_location, read_location, verify_published
from relocpy.models import ArtifactMetadata

DURATION_RE = re.compile(r"^(\d+)([dhm])$")


def parse_duration(text: str) -> timedelta:
    match = DURATION_RE.match(text.strip())
    if not match:
        raise IndexError_(f"bad duration {text!r}: use e.g. 30d, 12h or 90m")
    amount, unit = int(match.group(1)), match.group(2)
    duration = {"d": timedelta(days=amount), "h": timedelta(hours=amount), "m": timedelta(minutes=amount)}[unit]
    if duration > MAX_LIFETIME:
        raise IndexError_(f"--expires {text} is longer than the {MAX_LIFETIME.days}d clients accept; re-publish "
                          "more often instead")
    return duration


def artifact_url(base_url: str, name: str) -> str:
    # In URLs '+' is percent-encoded: some servers and uv read a raw '+' in a path as a space.
    if "://" not in base_url:
        return str(Path(base_url).expanduser().absolute() / name)
    return base_url.rstrip("/") + "/" + quote(name, safe="")


def read_metadata(path: Path) -> ArtifactMetadata:
    try:
        meta = ArtifactMetadata.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        first = exc.errors()[0]
        raise IndexError_(f"{path.name}: not artifact metadata ({'.'.join(map(str, first['loc']))}: {first['msg']})") from None
    if path.name != meta.name + ".json":
        raise IndexError_(f"{path.name}: describes {meta.name}; metadata must be named <archive>.json")
    return meta


def entry_for(dist: Path, meta_path: Path, base_url: str) -> IndexEntry:
    """One index entry, after checking the archive's bytes against its metadata."""
    meta = read_metadata(meta_path)
    archive = dist / meta.name
    if not archive.is_file():
        raise IndexError_(f"{meta_path.name}: archive {meta.name} is missing from {dist}")
    size = archive.stat().st_size
    if size != meta.size:
        raise IndexError_(f"{meta.name}: size {size}, metadata says {meta.size}")
    actual = file_sha256(archive)
    if actual != meta.sha256:
        raise IndexError_(f"{meta.name}: sha256 {actual}, metadata says {meta.sha256}")
    return IndexEntry(
        name=meta.name,
        key=meta.key,
        url=artifact_url(base_url, meta.name),
        sha256=meta.sha256,
        size=meta.size,
        abi_tag=meta.abi_tag,
        build_options=meta.variant,
        metadata_url=artifact_url(base_url, meta_path.name),
        metadata_sha256=file_sha256(meta_path),
    )


def dist_entries(dist: Path, base_url: str) -> list[IndexEntry]:
    if not dist.is_dir():
        raise IndexError_(f"{dist} is not a directory")
    metas = sorted(p for p in dist.glob("*.json") if p.name != INDEX_NAME)
    if not metas:
        raise IndexError_(f"{dist} holds no artifact metadata (*.json beside the archives)")
    return [entry_for(dist, path, base_url) for path in metas]


def previous_index(dist: Path, previous: str | None, trusted: list[keys.TrustedKey], channel: str) -> Index | None:
    """The index the new one continues: from --previous, else DIST/index.json, else none.

    --previous is an index (URL or path) or a publish location, where
    nothing published yet is the first release. Whatever is read must verify
    with the keys given and be of the channel being built: an index nobody
    here can verify never sets the serial.
    """
    if previous and _is_publish_location(previous):
        from relocpy.publish import published_index  # publish builds on this module

        data = published_index(previous)
        previous = f"{previous.rstrip('/')}/{INDEX_NAME}"
    elif previous:
        previous = index_location(previous)
        data = read_location(previous, MAX_INDEX_BYTES)
    else:
        existing = dist / INDEX_NAME
        data = existing.read_bytes() if existing.is_file() else None
        previous = str(existing)
    return verify_published(data, trusted, channel, previous) if data is not None else None


def _is_publish_location(location: str) -> bool:
    """s3:// or a directory path (existing or not: the first release creates it);
    a URL or an index.json file is read as an index."""
    if location.startswith("s3://"):
        return True
    return "://" not in location and not location.endswith(".json") and not Path(location).is_file()


def build_index(
    dist: Path, base_url: str, expires_in: timedelta, channel: str, previous: Index | None = None,
    now: datetime | None = None,
) -> Index:
    now = now or datetime.now(timezone.utc)
    return Index(
        channel=channel,
        serial=next_serial(previous.serial) if previous else 1,
        generated=now.replace(microsecond=0),
        expires=(now + expires_in).replace(microsecond=0),
        artifacts=dist_entries(dist, base_url),
    )


def write_signed(dist: Path, index: Index, private_keys: list) -> bytes:
    """Write DIST/index.json: the index and its signatures, in one atomic write."""
    data = seal(index, private_keys)
    write_atomic(dist / INDEX_NAME, data)
    return data
