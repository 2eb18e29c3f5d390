"""The signed index: what a dist directory holds, and how clients trust it.

`index.json` lists every artifact with its hash and tags; `index.json.sig`
holds Ed25519 signatures over its exact bytes. A client accepts an index only
when a pinned key signed it, it has not expired, and its serial is not lower
than the highest it has seen from the same URL (rollback protection).
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Literal
import urllib.error
from urllib.parse import quote, urljoin

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from relocpy import keys
from relocpy.hashing import file_sha256
from relocpy.errors import IndexError_, SignatureMismatch, TrustError
from relocpy import http
from relocpy.models import ArtifactKey, ArtifactMetadata

INDEX_NAME = "index.json"
SIG_SUFFIX = ".sig"
INDEX_SCHEMA_VERSION = 1
MAX_INDEX_BYTES = 32 << 20  # an index larger than this is an attack, not a release
DURATION_RE = re.compile(r"^(\d+)([dhm])$")
CHUNK = 1 << 16


class IndexEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str  # archive file name (ArtifactKey.filename)
    url: str  # absolute, or relative to the index's own URL
    sha256: str
    size: int
    implementation: str
    python_version: str
    build_tag: str
    abi_tag: str
    platform_tag: str
    variant: str | None  # None: the default variant
    build_options: str  # canonical option set, e.g. pgo+lto
    flavor: str
    metadata_url: str
    metadata_sha256: str

    @property
    def key(self) -> ArtifactKey:
        return ArtifactKey.parse(self.name)


class Index(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = INDEX_SCHEMA_VERSION
    serial: int = Field(ge=1)
    generated: datetime
    expires: datetime
    artifacts: list[IndexEntry]

    def to_bytes(self) -> bytes:
        return (json.dumps(self.model_dump(mode="json"), indent=2) + "\n").encode()


def parse_index(data: bytes, where: str) -> Index:
    try:
        return Index.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "top level"
        raise IndexError_(f"{where}: not a relocpy index ({loc}: {first['msg']})") from None


def parse_duration(text: str) -> timedelta:
    match = DURATION_RE.match(text.strip())
    if not match:
        raise IndexError_(f"bad duration {text!r}: use e.g. 30d, 12h or 90m")
    amount, unit = int(match.group(1)), match.group(2)
    return {"d": timedelta(days=amount), "h": timedelta(hours=amount), "m": timedelta(minutes=amount)}[unit]


# --- building -------------------------------------------------------------------


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
        url=artifact_url(base_url, meta.name),
        sha256=meta.sha256,
        size=meta.size,
        implementation=meta.key.implementation,
        python_version=meta.python_version,
        build_tag=meta.key.build_tag,
        abi_tag=meta.abi_tag,
        platform_tag=meta.platform_tag,
        variant=meta.key.variant,
        build_options=meta.variant,
        flavor=meta.key.flavor,
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
    """s3://, a directory, or a path not made yet that names no index file: the
    first publish to a directory creates it, so nothing there is serial 0."""
    if location.startswith("s3://"):
        return True
    if is_url(location):
        return False
    path = Path(location.removeprefix("file://"))
    return path.is_dir() or (not path.exists() and path.suffix != ".json")


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


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


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


# --- reading and trusting -------------------------------------------------------------


def is_url(location: str) -> bool:
    return location.startswith(("http://", "https://"))


def index_location(location: str) -> str:
    """Accept a dist dir, an index path or a URL (to index.json or to its directory)."""
    if is_url(location):
        return location if location.endswith(".json") else location.rstrip("/") + "/" + INDEX_NAME
    path = Path(location.removeprefix("file://")).expanduser()
    return str((path / INDEX_NAME if path.is_dir() else path).absolute())


def read_location(location: str, limit: int, timeout: float = 30.0, retries: int = 3) -> bytes:
    """Bytes of a small file at a path or http(s) URL, at most limit of them."""
    if not is_url(location):
        path = Path(location.removeprefix("file://"))
        try:
            with path.open("rb") as handle:
                data = handle.read(limit + 1)
        except OSError as exc:
            raise IndexError_(f"cannot read {location}: {exc.strerror}") from None
        return _within(data, limit, location)
    last: str = ""
    for _ in range(max(1, retries)):
        try:
            with http.get(location, timeout) as response:
                if response.status == 200:
                    return _within(response.read(limit + 1), limit, location)
                last = f"HTTP {response.status}"
                break
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
            if exc.code < 500:
                break
        except http.ERRORS as exc:
            last = type(exc).__name__
    raise IndexError_(f"cannot fetch {location}: {last}")


def _within(data: bytes, limit: int, location: str) -> bytes:
    if len(data) > limit:
        raise IndexError_(f"{location}: larger than {limit} bytes; refusing")
    return data


class SeenSerials:
    """Highest serial accepted per index URL, kept in the user's state file."""

    def __init__(self, path: Path):
        self.path = path

    def load(self) -> dict[str, int]:
        try:
            return dict(json.loads(self.path.read_text()).get("serials", {}))
        except (OSError, ValueError):
            return {}

    def get(self, source: str) -> int:
        return self.load().get(source, 0)

    def record(self, source: str, serial: int) -> None:
        serials = self.load()
        if serials.get(source, 0) >= serial:
            return
        serials[source] = serial
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, (json.dumps({"serials": serials}, indent=2) + "\n").encode())


def check_index(
    data: bytes, signature: bytes, trusted: list[keys.TrustedKey], source: str,
    seen: SeenSerials, now: datetime | None = None,
) -> Index:
    """Signature, then expiry, then serial; only an index passing all three is remembered."""
    keys.verify(data, signature, trusted)
    index = parse_index(data, source)
    now = now or datetime.now(timezone.utc)
    if index.expires <= now:
        raise TrustError(f"index expired at {index.expires.isoformat()} (serial {index.serial}); refusing a stale index")
    highest = seen.get(source)
    if index.serial < highest:
        raise TrustError(f"index serial {index.serial} is lower than {highest} already seen from {source}: rollback refused")
    seen.record(source, index.serial)
    return index


def load_verified(location: str, trusted: list[keys.TrustedKey], seen: SeenSerials, timeout: float = 30.0) -> tuple[str, Index]:
    """Fetch index and signature from a path or URL and check them; return (canonical location, index)."""
    source = index_location(location)
    for attempt in range(2):
        data = read_location(source, MAX_INDEX_BYTES, timeout)
        signature = read_location(source + SIG_SUFFIX, 1 << 20, timeout)
        try:
            return source, check_index(data, signature, trusted, source, seen)
        except SignatureMismatch:
            # A publisher writes the index, then its signature: one fetch may fall between.
            if attempt or not is_url(source):
                raise
            time.sleep(1.0)
    raise AssertionError("unreachable")


def resolve_url(source: str, url: str) -> str:
    """An entry's URL made absolute against the index it came from."""
    if is_url(url) or url.startswith("/"):
        return url
    if is_url(source):
        return urljoin(source, url)
    return str(Path(source).parent / url)
