"""Get every source of a plan onto disk, verified.

Order: the content-addressed cache, then each mirror (a directory or an
http(s) base URL holding files by name), then the file's upstream URLs. The
sha256 is computed while the bytes stream in; a file reaches the cache only
whole and verified, by an atomic rename. Nothing unverified is ever returned.
"""

from __future__ import annotations

import hashlib
import time
import urllib.error
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, ConfigDict

from relocpy import http
from relocpy.errors import HashMismatchError, SourceError
from relocpy.models import SourceFile
from relocpy.progress import TransferProgress, warn
from relocpy.settings import FetchSettings

CHUNK = 1 << 16
HTTP_CHUNK = 1 << 20  # fewer, larger reads: per-read overhead dominated on fast links


class FetchedSource(BaseModel):
    model_config = ConfigDict(frozen=True)

    component: str
    source: SourceFile
    path: Path
    location: str  # where the bytes came from: "cache", a mirror path or a URL


@dataclass
class _Attempt:
    """What went wrong with one location, kept to explain a final failure."""

    location: str
    reason: str
    mismatch: bool = False


@dataclass
class _Partial:
    """Bytes of a download so far; a retry resumes from here."""

    path: Path
    hasher: "hashlib._Hash" = field(default_factory=hashlib.sha256)
    size: int = 0


class Sink(Protocol):
    """Sees a download's bytes as they stream in (before they are verified)."""

    def restart(self) -> None: ...  # the bytes fed so far are void: a new attempt starts at 0

    def feed(self, chunk: bytes) -> None: ...


def cache_path(settings: FetchSettings, source: SourceFile) -> Path:
    return settings.cache_dir / "sources" / source.sha256 / source.file


def fetch_all(
    components: list[tuple[str, list[SourceFile]]], settings: FetchSettings, sink: Sink | None = None
) -> list[FetchedSource]:
    """Fetch each component's first obtainable candidate file, in parallel.

    sink, for a single component only, is fed the bytes of whichever attempt succeeds.
    """
    assert sink is None or len(components) == 1
    with TransferProgress(enabled=settings.progress) as progress:
        fetcher = Fetcher(settings, progress, sink)
        with ThreadPoolExecutor(max_workers=max(1, settings.parallel)) as pool:
            futures = [pool.submit(fetcher.fetch_component, name, files) for name, files in components]
            return [future.result() for future in futures]


class Fetcher:
    def __init__(self, settings: FetchSettings, progress: TransferProgress, sink: Sink | None = None):
        self.settings = settings
        self.progress = progress
        self.sink = sink

    def _restart(self) -> None:
        if self.sink is not None:
            self.sink.restart()

    def _take(self, partial: _Partial, chunk: bytes) -> None:
        partial.hasher.update(chunk)
        if self.sink is not None:
            self.sink.feed(chunk)

    def fetch_component(self, component: str, candidates: list[SourceFile]) -> FetchedSource:
        attempts: list[_Attempt] = []
        for source in candidates:
            cached = cache_path(self.settings, source)
            if cached.is_file():
                return FetchedSource(component=component, source=source, path=cached, location="cache")
        for source in candidates:
            for location in self._locations(source):
                attempt = self._try(source, location)
                if attempt is None:
                    for failed in attempts:
                        if failed.mismatch:
                            warn(f"{component}: refused {failed.location}: {failed.reason}")
                    return FetchedSource(
                        component=component, source=source, path=cache_path(self.settings, source), location=location
                    )
                attempts.append(attempt)
        raise _failure(component, candidates, attempts, self.settings)

    def _locations(self, source: SourceFile) -> list[str]:
        locations = []
        for mirror in self.settings.mirrors:
            if mirror.startswith(("http://", "https://")):
                if not self.settings.offline:
                    locations.append(mirror.rstrip("/") + "/" + source.file)
            else:
                locations.append(str(Path(mirror) / source.file))
        if not self.settings.offline:
            locations += source.urls
        return locations

    def _try(self, source: SourceFile, location: str) -> _Attempt | None:
        target = cache_path(self.settings, source)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = _Partial(path=target.parent / f".{source.file}.{uuid.uuid4().hex}.part")
        self._restart()
        try:
            if location.startswith(("http://", "https://")):
                self._download(location, partial, source.file)
            elif Path(location).is_file():
                self._copy(Path(location), partial)
            else:
                return _Attempt(location, "not there")
            actual = partial.hasher.hexdigest()
            if actual != source.sha256:
                return _Attempt(location, f"sha256 {actual}, expected {source.sha256}", mismatch=True)
            partial.path.replace(target)  # atomic: the cache only ever holds verified files
            return None
        except http.ERRORS as exc:
            return _Attempt(location, http.describe(exc))
        finally:
            partial.path.unlink(missing_ok=True)

    def _copy(self, path: Path, partial: _Partial) -> None:
        with path.open("rb") as src, partial.path.open("wb") as dst:
            while chunk := src.read(CHUNK):
                self._take(partial, chunk)
                dst.write(chunk)

    def _download(self, url: str, partial: _Partial, label: str) -> None:
        """Stream url into partial, resuming with a Range request after a cut."""
        last_error: Exception | None = None
        task = self.progress.add(label)
        try:
            for attempt in range(self.settings.retries):
                if attempt:
                    time.sleep(min(0.5 * 2**attempt, 8))
                try:
                    if self._stream(url, partial, task):
                        return
                    last_error = ConnectionError(f"connection closed after {partial.size} bytes")
                except urllib.error.HTTPError as exc:
                    if exc.code < 500:
                        raise  # 404 and friends will not get better
                    last_error = exc
                except http.ERRORS as exc:
                    last_error = exc
        finally:
            self.progress.done(task)
        assert last_error is not None
        raise last_error

    def _stream(self, url: str, partial: _Partial, task) -> bool:
        """One request; True when the body arrived whole."""
        headers = {"Range": f"bytes={partial.size}-"} if partial.size else {}
        with http.get(url, self.settings.timeout, headers) as response:
            if partial.size and response.status != 206:
                # The server ignored the range: start over.
                partial.hasher, partial.size = hashlib.sha256(), 0
                partial.path.unlink(missing_ok=True)
                self._restart()
            expected = _expected_total(response, partial.size)
            self.progress.update(task, completed=partial.size, total=expected)
            with partial.path.open("ab") as out:
                while chunk := response.read(HTTP_CHUNK):
                    self._take(partial, chunk)
                    out.write(chunk)
                    partial.size += len(chunk)
                    self.progress.update(task, completed=partial.size)
        return expected is None or partial.size >= expected


def _expected_total(response, offset: int) -> int | None:
    length = response.headers.get("content-length")
    if length is None or response.headers.get("content-encoding"):
        return None
    return offset + int(length)


def _failure(
    component: str, candidates: list[SourceFile], attempts: list[_Attempt], settings: FetchSettings
) -> SourceError:
    names = " or ".join(s.file for s in candidates)
    mismatches = [a for a in attempts if a.mismatch]
    if mismatches:
        first = mismatches[0]
        others = f" ({len(attempts) - 1} other location(s) failed too)" if len(attempts) > 1 else ""
        return HashMismatchError(f"{component}: {Path(first.location).name} from {first.location}: {first.reason}{others}")
    if not attempts:
        hint = " (offline, and no mirror given: pass --mirror)" if settings.offline else " (no mirror and no URL)"
        return SourceError(f"{component}: cannot get {names}{hint}")
    tried = "; ".join(f"{a.location}: {a.reason}" for a in attempts)
    return SourceError(f"{component}: cannot get {names}: {tried}")

