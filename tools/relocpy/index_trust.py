"""The client half of the index: read it from a path or URL and trust it only
when a pinned key signed it, it is of the channel the client expects, its
lifetime is within bounds, it has not expired, and its serial did not go back.

The serial floor is kept per (channel, signing key), not per location: the
same channel read through another spelling of its URL, a mirror or a local
copy is the same channel, and another channel signed by the same key cannot
raise this one's floor (it is refused before anything is recorded).
"""

from __future__ import annotations

import fcntl
import time
import urllib.error
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal
from urllib.parse import urljoin

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from relocpy import http, keys
from relocpy.errors import IndexError_, RelocpyError, TrustError
from relocpy.index import (
    INDEX_NAME, MAX_INDEX_BYTES, MAX_LIFETIME, MAX_SERIAL, Index, open_envelope, parse_payload, write_atomic,
)

if TYPE_CHECKING:
    from relocpy.settings import ClientSettings

INDEX_DEADLINE = 300.0  # seconds an index read may take where no setting says (RELOCPY_DEADLINE does for clients)


def is_url(location: str) -> bool:
    return location.startswith(("http://", "https://"))


def index_location(location: str) -> str:
    """Accept a dist dir, an index path or a URL (to index.json or to its directory)."""
    if is_url(location):
        return location if location.endswith(".json") else location.rstrip("/") + "/" + INDEX_NAME
    path = Path(location.removeprefix("file://")).expanduser()
    return str((path / INDEX_NAME if path.is_dir() else path).absolute())


def read_location(location: str, limit: int, timeout: float = 30.0, retries: int = 3,
                  deadline: float = INDEX_DEADLINE) -> bytes:
    """Bytes of a small file at a path or http(s) URL, at most limit of them.

    retries: attempts after the first (RELOCPY_RETRIES); deadline: seconds
    all of them may take (RELOCPY_DEADLINE): a server dripping bytes is cut off.
    """
    if not is_url(location):
        path = Path(location.removeprefix("file://"))
        try:
            with path.open("rb") as handle:
                data = handle.read(limit + 1)
        except OSError as exc:
            raise IndexError_(f"cannot read {location}: {exc.strerror}") from None
        return _within(data, limit, location)
    ends = time.monotonic() + deadline
    last: str = ""
    for _ in range(1 + max(0, retries)):
        try:
            with http.get(location, timeout, deadline=ends) as response:
                if response.status == 200:
                    data = response.read(limit + 1)
                    _check_deadline(ends, deadline, location)  # a cut-off body is not the index
                    return _within(data, limit, location)
                last = f"HTTP {response.status}"
                break
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
            if exc.code < 500:
                break
        except http.ERRORS as exc:
            _check_deadline(ends, deadline, location)
            last = type(exc).__name__
    raise IndexError_(f"cannot fetch {location}: {last}")


def _check_deadline(ends: float, deadline: float, location: str) -> None:
    if time.monotonic() >= ends:
        raise IndexError_(f"cannot fetch {location}: not done within the {deadline:g} s deadline (RELOCPY_DEADLINE)")


def _within(data: bytes, limit: int, location: str) -> bytes:
    if len(data) > limit:
        raise IndexError_(f"{location}: larger than {limit} bytes; refusing")
    return data


class RollbackState(BaseModel):
    """state.json: per channel, per signing key id, the highest serial accepted."""

    model_config = ConfigDict(extra="forbid", strict=True)

    format: Literal[1] = 1
    seen: dict[str, dict[str, Annotated[int, Field(ge=0, le=MAX_SERIAL)]]] = {}

    def floor(self, channel: str, key_ids: list[str]) -> int:
        known = self.seen.get(channel, {})
        return max((known.get(key_id, 0) for key_id in key_ids), default=0)


class SeenSerials:
    """The rollback state in the user's state file.

    Checked and updated in one step under a lock (two clients at once lose
    neither's update); a file that cannot be read is an error, never an empty
    history: failing open would accept any old index.
    """

    def __init__(self, path: Path):
        self.path = path

    @contextmanager
    def _locked(self):
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = self.path.with_name(self.path.name + ".lock").open("a")
        except OSError as exc:
            raise self._unusable(exc) from None
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def _unusable(self, exc: OSError) -> RelocpyError:
        # The user's to fix (exit 2), as any file the command cannot use.
        return RelocpyError(f"cannot use {self.path}: {exc.strerror} (it records the index serials seen, against "
                          "rollback; make its directory writable, or set XDG_DATA_HOME)")

    def _load(self) -> RollbackState:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return RollbackState()
        except OSError as exc:
            raise self._unusable(exc) from None
        try:
            return RollbackState.model_validate_json(data)
        except ValidationError:
            raise TrustError(f"{self.path} is corrupt: the index serials seen are unknown, so no index is trusted; "
                             "delete it to start over (each channel's next index is then accepted at any serial)"
                             ) from None

    def floor(self, channel: str, key_ids: list[str]) -> int:
        with self._locked():
            return self._load().floor(channel, key_ids)

    def accept(self, channel: str, key_ids: list[str], serial: int, source: str) -> None:
        """Refuse a serial below the floor of any key that signed it; else raise each key's floor to it."""
        with self._locked():
            state = self._load()
            highest = state.floor(channel, key_ids)
            if serial < highest:
                raise TrustError(f"index serial {serial} of channel {channel!r} is lower than {highest} already seen "
                                 f"(read from {source}): rollback refused")
            known = state.seen.setdefault(channel, {})
            if all(known.get(key_id, 0) >= serial for key_id in key_ids):
                return
            for key_id in key_ids:
                known[key_id] = max(known.get(key_id, 0), serial)
            try:
                write_atomic(self.path, (state.model_dump_json(indent=2) + "\n").encode())
            except OSError as exc:
                raise self._unusable(exc) from None


def verify_signed(data: bytes, trusted: list[keys.TrustedKey], where: str) -> tuple[Index, list[str]]:
    """The payload of index.json and the ids of the trusted keys that signed it.

    The signatures are checked before a byte of the payload is parsed."""
    envelope = open_envelope(data, where)
    signers = keys.verify(envelope.payload(), envelope.signatures, trusted)
    return parse_payload(envelope, where), signers


def check_channel(index: Index, channel: str, where: str) -> None:
    if index.channel != channel:
        raise TrustError(f"{where} is the index of channel {index.channel!r}, not {channel!r}: refused "
                         f"(pass --channel {index.channel} if that channel is the one you want)")


def check_fresh(index: Index, now: datetime) -> None:
    lifetime = index.expires - index.generated
    if lifetime > MAX_LIFETIME:
        raise TrustError(f"index serial {index.serial} is valid for {lifetime.days} days, more than the "
                         f"{MAX_LIFETIME.days} allowed: refused")
    if index.expires <= now:
        raise TrustError(f"index expired at {index.expires.isoformat()} (serial {index.serial}); "
                         "refusing a stale index")


def check_index(
    data: bytes, trusted: list[keys.TrustedKey], channel: str, seen: SeenSerials, source: str,
    now: datetime | None = None,
) -> Index:
    """Signature, channel, lifetime and expiry, then serial; only an index passing all is remembered."""
    index, signers = verify_signed(data, trusted, source)
    check_channel(index, channel, source)
    check_fresh(index, now or datetime.now(timezone.utc))
    seen.accept(channel, signers, index.serial, source)
    return index


def fetch_verified(location: str, settings: ClientSettings) -> tuple[str, Index]:
    """Fetch index.json from a path or URL under the client's settings (keys, channel, state file,
    timeout, retries, deadline) and check it; return (canonical location, index)."""
    trusted = [keys.parse_trusted(k) for k in settings.trusted_keys]
    source = index_location(location)
    fetch = settings.fetch
    data = read_location(source, MAX_INDEX_BYTES, fetch.timeout, fetch.retries, fetch.deadline)
    return source, check_index(data, trusted, settings.channel, SeenSerials(settings.state_file), source)


def verify_published(data: bytes, trusted: list[keys.TrustedKey], channel: str, where: str) -> Index:
    """A published index a publisher builds on (its serial, its entries).

    It must be signed by a key the publisher holds or trusts, and be of the
    channel being built; its expiry does not matter (the next release renews
    a lapsed channel), nor does the client-side rollback state.
    """
    try:
        index, _ = verify_signed(data, trusted, where)
    except TrustError as exc:
        raise TrustError(f"refusing to continue from {where}: {exc}") from None
    check_channel(index, channel, where)
    return index


def resolve_url(source: str, url: str) -> str:
    """An entry's URL made absolute against the index it came from."""
    if is_url(url) or url.startswith("/"):
        return url
    if is_url(source):
        return urljoin(source, url)
    return str(Path(source).parent / url)
