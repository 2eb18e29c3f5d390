"""Get every source of a plan onto disk, verified.

Order: the content-addressed cache, then each mirror (a directory or an
http(s) base URL holding files by name), then the file's upstream URLs. The
sha256 is computed while the bytes stream in; a file reaches the cache only
whole and verified, by an atomic rename. Nothing unverified is ever returned.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
import urllib.error
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from relocpy import http
from relocpy.errors import HashMismatchError, SourceError
from relocpy.models import SourceFile
from relocpy.progress import TransferProgress, warn
from relocpy.settings import FetchSettings

CHUNK = 1 << 16
HTTP_CHUNK = 1 << 20  # fewer, larger reads: per-read overhead dominated on fast links
PART_SUFFIX = ".part"


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


class _Partial:
    """A download's bytes so far, in a locked `.part` file beside its cache entry.

    The file is locked for as long as its download runs, so that a later run
    can tell a leftover (unlocked: its process died) from a live download.
    A retry resumes from here.
    """

    def __init__(self, directory: Path, name: str):
        while True:
            self.path = directory / f".{name}.{uuid.uuid4().hex}{PART_SUFFIX}"
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)
            if _same_file(fd, self.path):
                break
            os.close(fd)  # swept as a leftover between its creation and its lock: start again
        self.file = os.fdopen(fd, "wb")
        self.hasher = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self.hasher.update(chunk)
        self.file.write(chunk)
        self.size += len(chunk)

    def restart(self) -> None:
        self.file.seek(0)
        self.file.truncate()
        self.hasher, self.size = hashlib.sha256(), 0

    def close(self) -> None:
        self.path.unlink(missing_ok=True)
        self.file.close()


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.lstat(path).st_ino
    except FileNotFoundError:
        return False


def sweep_leftover_parts(directory: Path) -> None:
    """Remove `.part` files whose download died with its process (their lock is free)."""
    for path in directory.glob(f".*{PART_SUFFIX}"):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if _same_file(fd, path):
                path.unlink()
        except OSError:
            pass  # locked: a download in progress
        finally:
            os.close(fd)


class _GiveUp(Exception):
    """A location that will not get better by retrying: too large, or past the deadline."""

    def __init__(self, reason: str, wrong_bytes: bool):
        super().__init__(reason)
        self.wrong_bytes = wrong_bytes


def cache_path(settings: FetchSettings, source: SourceFile) -> Path:
    return settings.cache_dir / "sources" / source.sha256 / source.file


def fetch_all(
    components: list[tuple[str, list[SourceFile]]], settings: FetchSettings, max_size: int | None = None
) -> list[FetchedSource]:
    """Fetch each component's first obtainable candidate file, in parallel.

    max_size: the most bytes a file may have (an index entry's signed size);
    a location offering more is refused without writing the excess.
    """
    with TransferProgress(enabled=settings.progress) as progress:
        fetcher = Fetcher(settings, progress, max_size)
        with ThreadPoolExecutor(max_workers=max(1, settings.parallel)) as pool:
            futures = [pool.submit(fetcher.fetch_component, name, files) for name, files in components]
            return [future.result() for future in futures]


class Fetcher:
    def __init__(self, settings: FetchSettings, progress: TransferProgress, max_size: int | None = None):
        self.settings = settings
        self.progress = progress
        self.max_size = max_size

    def _take(self, partial: _Partial, chunk: bytes) -> None:
        if self.max_size is not None and partial.size + len(chunk) > self.max_size:
            raise _GiveUp(f"more than the {self.max_size} bytes expected", wrong_bytes=True)
        partial.write(chunk)

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
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            sweep_leftover_parts(target.parent)
            partial = _Partial(target.parent, source.file)
        except OSError as exc:
            raise SourceError(f"{source.file}: cannot write to the cache {target.parent}: {exc.strerror}") from None
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
            partial.file.flush()
            partial.path.replace(target)  # atomic: the cache only ever holds verified files
            return None
        except _GiveUp as exc:
            return _Attempt(location, str(exc), mismatch=exc.wrong_bytes)
        except http.ERRORS as exc:
            return _Attempt(location, http.describe(exc))
        finally:
            partial.close()

    def _copy(self, path: Path, partial: _Partial) -> None:
        with path.open("rb") as src:
            while chunk := src.read(CHUNK):
                self._take(partial, chunk)

    def _download(self, url: str, partial: _Partial, label: str) -> None:
        """Stream url into partial, resuming with a Range request after a cut.

        One attempt, then settings.retries more; all of them, with the pauses
        between them, within settings.deadline seconds.
        """
        deadline = time.monotonic() + self.settings.deadline
        last_error: Exception | None = None
        task = self.progress.add(label)
        try:
            for attempt in range(1 + self.settings.retries):
                if attempt:
                    time.sleep(min(0.5 * 2**attempt, 8, max(0.0, deadline - time.monotonic())))
                try:
                    if self._stream(url, partial, task, deadline):
                        return
                    last_error = ConnectionError(f"connection closed after {partial.size} bytes")
                except urllib.error.HTTPError as exc:
                    if exc.code < 500:
                        raise  # 404 and friends will not get better
                    last_error = exc
                except http.ERRORS as exc:
                    last_error = exc
                self._check_deadline(deadline, partial)
        finally:
            self.progress.done(task)
        assert last_error is not None
        raise last_error

    def _check_deadline(self, deadline: float, partial: _Partial) -> None:
        if time.monotonic() >= deadline:
            raise _GiveUp(f"not done within the {self.settings.deadline:g} s deadline (RELOCPY_DEADLINE; "
                          f"{partial.size} bytes arrived)", wrong_bytes=False)

    def _stream(self, url: str, partial: _Partial, task, deadline: float) -> bool:
        """One request; True when the body arrived whole. At the deadline
        http.get shuts the connection, whatever it waits for; the caller
        then finds the deadline passed."""
        self._check_deadline(deadline, partial)
        headers = {"Range": f"bytes={partial.size}-"} if partial.size else {}
        with http.get(url, self.settings.timeout, headers, deadline=deadline) as response:
            if partial.size and response.status != 206:
                partial.restart()  # the server ignored the range: start over
            expected = _expected_total(response, partial.size)
            if expected is not None and self.max_size is not None and expected > self.max_size:
                raise _GiveUp(f"the server offers {expected} bytes, more than the {self.max_size} expected",
                              wrong_bytes=True)
            self.progress.update(task, completed=partial.size, total=expected)
            while chunk := response.read(HTTP_CHUNK):
                self._take(partial, chunk)
                self.progress.update(task, completed=partial.size)
        return expected is None or partial.size >= expected


def _expected_total(response, offset: int) -> int | None:
    """What the whole file should measure, if the server says (http.client
    has already read the header, and set length to None unless it is valid)."""
    if response.length is None or response.headers.get("content-encoding"):
        return None
    return offset + response.length


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

