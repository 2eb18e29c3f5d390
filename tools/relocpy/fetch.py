"""Get every source of a plan onto disk, verified.

Order: the content-addressed cache, then each mirror (a directory or an
http(s) base URL holding files by name), then the file's upstream URLs. The
sha256 is computed while the bytes stream in; a file reaches the cache only
whole and verified, by an atomic rename. Nothing unverified is ever returned:
a cached file is hashed again each time it is used, because a cache is only
a directory (restored by CI, shared between builds) and its path says nothing
about its bytes. One that does not match is discarded and fetched again.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import os
import queue
import shutil
import stat
import threading
import time
import urllib.error
import uuid
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
CANCEL_GRACE = 2.0  # seconds an interrupted fetch waits for its workers to remove their partial files
PART_SUFFIX = ".part"
# A partial file nobody has written to for this long was left by a killed
# fetch (a live one writes at every chunk, a stalled one gives up after its
# timeout): the next fetch of the same file removes it.
ABANDONED_PART_AGE = 3600.0


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


class _Cancelled(BaseException):
    """The fetch was interrupted: a worker stops at its next chunk and removes its partial file."""


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
        if len(components) == 1:
            # In this thread: Ctrl-C stops even a read that waits for bytes.
            return [fetcher.fetch_component(*components[0])]
        return _in_parallel(fetcher, components, settings.parallel)


def _in_parallel(fetcher: Fetcher, components: list[tuple[str, list[SourceFile]]], workers: int) -> list[FetchedSource]:
    """fetch_component for each component, `workers` at a time, in daemon
    threads. On an interrupt the workers are told to stop at their next chunk
    and given a moment to; then every partial file still there is removed. A
    worker still waiting for a silent server is left behind: a daemon thread
    cannot hold the process open."""
    todo: queue.SimpleQueue[int] = queue.SimpleQueue()
    for index in range(len(components)):
        todo.put(index)
    results: list[FetchedSource | BaseException | None] = [None] * len(components)

    def work() -> None:
        while True:
            try:
                index = todo.get_nowait()
            except queue.Empty:
                return
            try:
                results[index] = fetcher.fetch_component(*components[index])
            except BaseException as exc:  # the main thread reports it; a thread must not print a traceback
                results[index] = exc

    threads = [threading.Thread(target=work, daemon=True) for _ in range(max(1, min(workers, len(components))))]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join()
    except BaseException:
        fetcher.cancelled.set()
        try:
            deadline = time.monotonic() + CANCEL_GRACE
            for thread in threads:
                thread.join(max(0.0, deadline - time.monotonic()))
        finally:  # a second Ctrl-C cuts the wait short, not the cleanup
            fetcher.remove_partials()
        raise
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results  # type: ignore[return-value]  # every slot holds a FetchedSource now


class Fetcher:
    def __init__(self, settings: FetchSettings, progress: TransferProgress, sink: Sink | None = None):
        self.settings = settings
        self.progress = progress
        self.sink = sink
        self.cancelled = threading.Event()  # set on an interrupt: every worker stops at its next chunk
        self.partials: set[Path] = set()  # partial files being written now

    def _restart(self) -> None:
        if self.sink is not None:
            self.sink.restart()

    def _take(self, partial: _Partial, chunk: bytes) -> None:
        if self.cancelled.is_set():
            raise _Cancelled
        partial.hasher.update(chunk)
        if self.sink is not None:
            self.sink.feed(chunk)

    def fetch_component(self, component: str, candidates: list[SourceFile]) -> FetchedSource:
        attempts: list[_Attempt] = []
        for source in candidates:
            cached = cache_path(self.settings, source)
            _remove_abandoned_partials(cached)
            refused = _check_cached(cached, source.sha256)
            if refused is None:
                return self._found(component, source, "cache", attempts)
            if refused.reason:
                attempts.append(refused)
        for source in candidates:
            for location in self._locations(source):
                attempt = self._try(source, location)
                if attempt is None:
                    return self._found(component, source, location, attempts)
                attempts.append(attempt)
        raise _failure(component, candidates, attempts, self.settings)

    def _found(self, component: str, source: SourceFile, location: str, attempts: list[_Attempt]) -> FetchedSource:
        """The verified file in the cache; what was refused on the way is said, not hidden."""
        for failed in attempts:
            if failed.mismatch:
                warn(f"{component}: refused {failed.location}: {failed.reason}")
        return FetchedSource(component=component, source=source, path=cache_path(self.settings, source),
                             location=location)

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
        partial = _Partial(path=target.parent / f".{source.file}.{uuid.uuid4().hex}{PART_SUFFIX}")
        self.partials.add(partial.path)
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
            self.partials.discard(partial.path)

    def remove_partials(self) -> None:
        """After an interrupt: the partial files of workers that did not stop in time."""
        for path in list(self.partials):
            path.unlink(missing_ok=True)

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


def _remove_abandoned_partials(target: Path) -> None:
    cutoff = time.time() - ABANDONED_PART_AGE
    for leftover in target.parent.glob(f".{glob.escape(target.name)}.*{PART_SUFFIX}"):
        try:
            if leftover.lstat().st_mtime < cutoff:
                leftover.unlink()
        except FileNotFoundError:
            pass  # another fetch removed it first


def _check_cached(path: Path, sha256: str) -> _Attempt | None:
    """None if the cache holds the pinned bytes at path. Otherwise whatever is
    there is removed, and the attempt says what it was (no reason: nothing was
    there). Only a regular file counts: the cache never makes links, and a
    fifo must not hang the build."""
    try:
        handle = open(path, "rb", opener=_no_follow_no_wait)
    except FileNotFoundError:
        return _Attempt(str(path), "")
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.EISDIR):
            raise  # unreadable: the CLI names the file and the reason
        _discard(path, None)
        kind = "a symbolic link" if exc.errno == errno.ELOOP else "a directory"
        return _Attempt(str(path), f"{kind} where a file belongs; discarded", mismatch=True)
    with handle:
        found = os.fstat(handle.fileno())
        if not stat.S_ISREG(found.st_mode):
            reason = "not a regular file where a file belongs; discarded"
        else:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
            if digest == sha256:
                return None
            reason = f"sha256 {digest}, expected {sha256}; the cached copy was discarded"
    _discard(path, found)
    return _Attempt(str(path), reason, mismatch=True)


def _no_follow_no_wait(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK)


def _discard(path: Path, hashed: os.stat_result | None) -> None:
    """Remove a bad cache entry, unless another build has renamed a good one
    in since it was looked at (another inode)."""
    try:
        now = path.lstat()
    except FileNotFoundError:
        return
    if hashed is not None and (now.st_dev, now.st_ino) != (hashed.st_dev, hashed.st_ino):
        return
    if stat.S_ISDIR(now.st_mode):
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


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

