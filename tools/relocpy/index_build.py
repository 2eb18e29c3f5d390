"""The publisher half of the index: entries from a dist directory, checked
against their archives, numbered after the published serial, and signed."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote

from pydantic import ValidationError

from relocpy import keys
from relocpy.errors import IndexError_
from relocpy.hashing import file_sha256
from relocpy.index import INDEX_NAME, MAX_INDEX_BYTES, SIG_SUFFIX, Index, IndexEntry, parse_index, write_atomic
from relocpy.index_trust import read_location
from relocpy.models import ArtifactMetadata

DURATION_RE = re.compile(r"^(\d+)([dhm])$")


def parse_duration(text: str) -> timedelta:
    match = DURATION_RE.match(text.strip())
    if not match:
        raise IndexError_(f"bad duration {text!r}: use e.g. 30d, 12h or 90m")
    amount, unit = int(match.group(1)), match.group(2)
    return {"d": timedelta(days=amount), "h": timedelta(hours=amount), "m": timedelta(minutes=amount)}[unit]


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


def previous_serial(dist: Path, previous: str | None) -> int:
    """The serial the new index must exceed: from --previous, else DIST/index.json, else 0.

    --previous is an index (URL or path) or a publish location: there,
    nothing published yet is the first release (0)."""
    if previous and _is_publish_location(previous):
        from relocpy.publish import published_index  # publish builds on this module

        data = published_index(previous)
        return parse_index(data, previous).serial if data is not None else 0
    if previous:
        return parse_index(read_location(previous, MAX_INDEX_BYTES), previous).serial
    existing = dist / INDEX_NAME
    if existing.is_file():
        return parse_index(existing.read_bytes(), str(existing)).serial
    return 0


def _is_publish_location(location: str) -> bool:
    """s3:// or a directory path (existing or not: the first release creates it);
    a URL or an index.json file is read as an index."""
    if location.startswith("s3://"):
        return True
    return "://" not in location and not location.endswith(".json") and not Path(location).is_file()


def build_index(
    dist: Path, base_url: str, expires_in: timedelta, previous: str | None = None,
    now: datetime | None = None,
) -> Index:
    now = now or datetime.now(timezone.utc)
    return Index(
        serial=previous_serial(dist, previous) + 1,
        generated=now.replace(microsecond=0),
        expires=(now + expires_in).replace(microsecond=0),
        artifacts=dist_entries(dist, base_url),
    )


def write_signed(dist: Path, index: Index, key_files: list[Path]) -> tuple[bytes, bytes]:
    """Write index.json and its detached signature; the signature goes last."""
    if not key_files:
        raise IndexError_("an index must be signed: pass --sign KEYFILE")
    private = [keys.load_private(path) for path in key_files]
    data = index.to_bytes()
    signature = keys.sign(data, private)
    write_atomic(dist / INDEX_NAME, data)
    write_atomic(dist / (INDEX_NAME + SIG_SUFFIX), signature)
    return data, signature
