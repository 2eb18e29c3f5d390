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
import fcntl
import hashlib
import os
import queue
import shutil
import stat
import threading
import time
import urllib.error
import uuid
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
CANCEL_GRACE = 2.0  # seconds an interrupted fetch waits for its workers to remove their partial files
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


class _Cancelled(BaseException):
    """The fetch was interrupted: a worker stops at its next chunk and removes its partial file."""


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
    def __init__(self, settings: FetchSettings, progress: TransferProgress, max_size: int | None = None):
        self.settings = settings
        self.progress = progress
        self.max_size = max_size
        self.cancelled = threading.Event()  # set on an interrupt: every worker stops at its next chunk
        self.partials: set[Path] = set()  # partial files being written now

    def _take(self, partial: _Partial, chunk: bytes) -> None:
        if self.cancelled.is_set():
            raise _Cancelled
        if self.max_size is not None and partial.size + len(chunk) > self.max_size:
            raise _GiveUp(f"more than the {self.max_size} bytes expected", wrong_bytes=True)
        partial.write(chunk)

    def fetch_component(self, component: str, candidates: list[SourceFile]) -> FetchedSource:
        attempts: list[_Attempt] = []
        for source in candidates:
            cached = cache_path(self.settings, source)
            sweep_leftover_parts(cached.parent)  # a dead fetch's leftovers go, whether this one downloads or not
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
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = _Partial(target.parent, source.file)
        except OSError as exc:
            raise SourceError(f"{source.file}: cannot write to the cache {target.parent}: {exc.strerror}") from None
        self.partials.add(partial.path)
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
            self.partials.discard(partial.path)

    def remove_partials(self) -> None:
        """After an interrupt: the partial files of workers that did not stop in time."""
        for path in list(self.partials):
            path.unlink(missing_ok=True)

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


def _check_cached(path: Path, sha256: str) -> _Attempt | None:
    """None if the cache holds the pinned bytes at path. Otherwise whatever is
    there is removed, and the attempt says what it was (no reason: nothing was
    there). Only a regular file counts: the cache never makes links, and a
    fifo must not hang the build."""
    try:
        handle = open(path, "rb", opener=_no_follow_no_wait)
    except (FileNotFoundError, NotADirectoryError):  # nothing there (a file in the cache's way: said on writing)
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

