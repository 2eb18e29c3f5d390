"""The client half of the index: read it from a path or URL and trust it only
when a pinned key signed it, it has not expired and its serial did not go back."""

from __future__ import annotations

import json
import time
import urllib.error
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urljoin

from relocpy import http, keys
from relocpy.errors import IndexError_, SignatureMismatch, TrustError
from relocpy.index import INDEX_NAME, MAX_INDEX_BYTES, SIG_SUFFIX, Index, parse_index, write_atomic


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
