"""Upload a dist directory to a directory or an S3 bucket, index last.

Artifacts and their metadata go first, and a name is never overwritten: a
directory target links the staged copy into place (link(2) fails when the
name exists), S3 creates it with If-None-Match: *. A name already there with
the same sha256 is kept; with other bytes it is refused. So a published file
always has the bytes the index that named it first says.

The index (one file holding the index and its signatures: index.py) is the
commit point, written once and conditionally: on S3 with If-Match on the
ETag read, or If-None-Match '*' when there was none; on a directory under a
lock, only if unchanged since it was read, by an atomic rename. A published
index that differs from ours is verified (with the keys of --sign and
--trusted-key) before anything in it is compared or merged. The loser of a
race re-reads and, given signing keys, merges and re-signs. A run killed at
any point leaves the old index or the new one, and running it again
finishes the job.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import signal
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlparse

from relocpy import keys
from relocpy.errors import PublishError, RelocpyError, TrustError
from relocpy.extras import require
from relocpy.hashing import file_sha256
from relocpy.index import (
    INDEX_NAME, MAX_INDEX_BYTES, Index, next_serial, open_envelope, parse_payload, seal, sync_directory,
)
from relocpy.index_trust import verify_published, verify_signed
from relocpy.progress import info

INDEX_ATTEMPTS = 5
FAULT_ENV = "RELOCPY_FAULT"
WRITE_POINTS = ("file-staged", "file-written", "index-read", "index-staged", "index-written")


class Conflict(Exception):
    """The remote index changed between our read and our write."""


@dataclass
class Report:
    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    index: str = ""  # what happened to the index


_fired: set[str] = set()


def crash_point(point: str) -> None:
    """For the crash tests only: RELOCPY_FAULT=publish:POINT kills this process
    at that write point (SIGKILL: nothing is cleaned up, as in a real crash);
    publish:POINT:stop stops it there once (SIGSTOP), so that a test can run a
    rival publisher before it continues. POINT is one of WRITE_POINTS."""
    area, _, rest = os.environ.get(FAULT_ENV, "").partition(":")
    wanted, _, action = rest.partition(":")
    if area != "publish" or wanted != point or point in _fired:
        return
    _fired.add(point)
    os.kill(os.getpid(), signal.SIGSTOP if action == "stop" else signal.SIGKILL)


def name_taken(name: str, where: str, remote: str | None) -> PublishError:
    what = f"with other content (sha256 {remote})" if remote else "as something other than a file"
    return PublishError(f"{name} already exists at {where} {what}; refusing to replace it")


def _capped(data: bytes, where: str) -> bytes:
    if len(data) > MAX_INDEX_BYTES:
        raise PublishError(f"{where}: larger than {MAX_INDEX_BYTES} bytes; refusing to read it")
    return data


# --- targets -------------------------------------------------------------------------


class DirTarget:
    def __init__(self, root: Path):
        self.root = root
        self.label = str(root)

    def existing_sha(self, name: str) -> str | None:
        path = self.root / name
        return file_sha256(path) if path.is_file() else None

    def upload(self, name: str, path: Path, sha256: str) -> None:
        """Stage a copy beside the name, then link it into place: link(2) never replaces a name."""
        self.root.mkdir(parents=True, exist_ok=True)
        staged = self.root / f".{name}.{uuid.uuid4().hex}.part"
        try:
            with path.open("rb") as source, staged.open("xb") as copy:
                shutil.copyfileobj(source, copy, 1 << 20)
                copy.flush()
                os.fsync(copy.fileno())
            crash_point("file-staged")
            try:
                os.link(staged, self.root / name)
            except FileExistsError:
                remote = self.existing_sha(name)
                if remote != sha256:
                    raise name_taken(name, self.label, remote) from None
        finally:
            staged.unlink(missing_ok=True)
        sync_directory(self.root)

    def read_index(self) -> tuple[bytes | None, str | None]:
        path = self.root / INDEX_NAME
        try:
            with path.open("rb") as handle:
                data = _capped(handle.read(MAX_INDEX_BYTES + 1), str(path))
        except FileNotFoundError:
            return None, None
        return data, hashlib.sha256(data).hexdigest()

    def write_index(self, data: bytes, token: str | None) -> None:
        """Replace index.json only if it is still what was read (token), in one rename."""
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".publish.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.read_index()[1] != token:
                raise Conflict()
            staged = self.root / f".{INDEX_NAME}.{uuid.uuid4().hex}.tmp"
            try:
                with staged.open("xb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                crash_point("index-staged")
                os.replace(staged, self.root / INDEX_NAME)
            finally:
                staged.unlink(missing_ok=True)
            sync_directory(self.root)


class S3Target:
    def __init__(self, url: str, endpoint_url: str | None = None):
        boto3 = require("s3", "boto3")
        Config = require("s3", "botocore.config").Config

        parsed = urlparse(url)
        if not parsed.netloc:
            raise PublishError(f"bad S3 URL {url!r}: use s3://BUCKET/PREFIX")
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.label = url
        boto = boto3.Session()
        self.client = boto.client(
            "s3", endpoint_url=endpoint_url, region_name=boto.region_name or "us-east-1",
            config=Config(retries={"max_attempts": 5, "mode": "standard"}),
        )

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def existing_sha(self, name: str) -> str | None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(name))
        except self.client.exceptions.ClientError as exc:
            if _status(exc) == 404:
                return None
            raise
        known = head.get("Metadata", {}).get("sha256")
        return known or self._hash_remote(name)

    def _hash_remote(self, name: str) -> str:
        """An object put there by other tools: hash its bytes."""
        body = self.client.get_object(Bucket=self.bucket, Key=self._key(name))["Body"]
        digest = hashlib.sha256()
        for chunk in iter(lambda: body.read(1 << 20), b""):
            digest.update(chunk)
        return digest.hexdigest()

    def upload(self, name: str, path: Path, sha256: str) -> None:
        crash_point("file-staged")
        with path.open("rb") as body:
            try:
                # If-None-Match: a name is created once; a racing publisher of the same name cannot replace it.
                self.client.put_object(
                    Bucket=self.bucket, Key=self._key(name), Body=body, IfNoneMatch="*",
                    Metadata={"sha256": sha256}, ContentType=_content_type(name),
                )
            except self.client.exceptions.ClientError as exc:
                if _status(exc) not in (409, 412):
                    raise
                remote = self.existing_sha(name)
                if remote != sha256:
                    raise name_taken(name, self.label, remote) from None

    def read_index(self) -> tuple[bytes | None, str | None]:
        try:
            got = self.client.get_object(Bucket=self.bucket, Key=self._key(INDEX_NAME))
        except self.client.exceptions.ClientError as exc:
            if _status(exc) == 404:
                return None, None
            raise
        return _capped(got["Body"].read(MAX_INDEX_BYTES + 1), f"{self.label}/{INDEX_NAME}"), got["ETag"]

    def write_index(self, data: bytes, token: str | None) -> None:
        """One conditional PUT: the index and its signatures land together or not at all."""
        condition = {"IfMatch": token} if token else {"IfNoneMatch": "*"}
        crash_point("index-staged")
        try:
            self.client.put_object(
                Bucket=self.bucket, Key=self._key(INDEX_NAME), Body=data,
                ContentType="application/json", CacheControl="no-cache", **condition,
            )
        except self.client.exceptions.ClientError as exc:
            if _status(exc) in (409, 412):
                raise Conflict() from None
            raise


def _status(exc) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _content_type(name: str) -> str:
    if name.endswith(".json"):
        return "application/json"
    return "application/zstd" if name.endswith(".zst") else "application/gzip"


URL_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def open_target(to: str, endpoint_url: str | None = None):
    if to.startswith("s3://"):
        return S3Target(to, endpoint_url)
    # Anything that starts like a URL is one: `s3:/bucket` is a typo to refuse,
    # not a directory named "s3:" to create.
    if URL_SCHEME_RE.match(to):
        raise PublishError(f"unsupported target {to!r}: use a directory or s3://BUCKET/PREFIX "
                           "(a directory whose name has ':' before any '/' must be written ./NAME)")
    return DirTarget(Path(to).expanduser().absolute())


# --- publishing ------------------------------------------------------------------------


def published_index(location: str) -> bytes | None:
    """The index at a publish location (directory or s3://), None when nothing is published there yet."""
    target = open_target(location)
    try:
        return target.read_index()[0]
    except Exception as exc:
        if not _is_transport_error(exc):
            raise
        raise PublishError(f"reading {target.label}/{INDEX_NAME} failed: {exc}") from None


def local_index(data: bytes, signing: keys.PublisherKeys, where: str) -> Index:
    """DIST's index: verified when keys were given (a swapped DIST/index.json is not
    published); without keys it can only be read, and is the publisher's own."""
    if not signing.trusted:
        return parse_payload(open_envelope(data, where), where)
    try:
        return verify_signed(data, signing.trusted, where)[0]
    except TrustError as exc:
        raise TrustError(f"{where}: {exc}; refusing to publish it") from None


def files_to_publish(dist: Path, index: Index, target) -> list[tuple[str, Path, str]]:
    """(name, path, sha256) of every file of the index that DIST holds, checked against it.

    A file the index names but DIST lacks must already be at the target with
    the bytes the index names (an index that merged earlier releases, on a
    re-run): the index published always names files that are there.
    """
    files = []
    for entry in index.artifacts:
        for name, sha in ((entry.name, entry.sha256), (entry.name + ".json", entry.metadata_sha256)):
            path = dist / name
            if path.is_file():
                if file_sha256(path) != sha:
                    raise PublishError(f"{name} in {dist} does not match {INDEX_NAME}; rebuild the index")
                files.append((name, path, sha))
                continue
            remote = target.existing_sha(name)
            if remote is None:
                raise PublishError(f"{name} is in {INDEX_NAME} but neither in {dist} nor at {target.label}")
            if remote != sha:
                raise name_taken(name, target.label, remote)
    return files


def upload_files(target, files, dry_run: bool, report: Report) -> None:
    for name, path, sha in files:
        remote = target.existing_sha(name)
        if remote == sha:
            report.skipped.append(name)
            continue
        if remote is not None:
            raise name_taken(name, target.label, remote)
        if not dry_run:
            target.upload(name, path, sha)
            crash_point("file-written")
        report.uploaded.append(name)


def holds_all(theirs: Index, ours: Index) -> bool:
    """Every entry of ours is in theirs, unchanged."""
    by_name = {entry.name: entry for entry in theirs.artifacts}
    return all(by_name.get(entry.name) == entry for entry in ours.artifacts)


def next_index(
    local: bytes, ours: Index, remote: bytes | None, signing: keys.PublisherKeys, where: str,
) -> tuple[bytes, int] | None:
    """What to write over the remote index, and its serial: None when the remote already publishes ours."""
    if remote is None:
        return local, ours.serial
    if remote == local:
        return None
    if not signing.trusted:
        raise PublishError(f"{where} is not our index and no key was given to verify it: pass --sign KEYFILE "
                           "(or --trusted-key KEY for a key that no longer signs)")
    theirs = verify_published(remote, signing.trusted, ours.channel, where)
    if holds_all(theirs, ours) and theirs.serial >= ours.serial and theirs.expires >= ours.expires:
        return None  # e.g. a re-run after this publish merged and wrote; a later expiry is a refresh to publish
    ours_names = {entry.name for entry in ours.artifacts}
    missing = [entry for entry in theirs.artifacts if entry.name not in ours_names]
    if not missing and ours.serial > theirs.serial:
        return local, ours.serial
    if not signing.private:
        why = (f"has {len(missing)} entries not in ours" if missing else "is not older than ours")
        raise PublishError(f"the index at {where} (serial {theirs.serial}) {why} (serial {ours.serial}); "
                           "rebuild with --previous, or pass --sign to merge")
    merged = Index(
        channel=ours.channel,
        serial=max(ours.serial, next_serial(theirs.serial)),
        generated=datetime.now(timezone.utc).replace(microsecond=0),
        expires=ours.expires,
        artifacts=sorted([*ours.artifacts, *missing], key=lambda e: e.name),
    )
    return seal(merged, signing.private), merged.serial


def publish_index(
    local: bytes, ours: Index, target, signing: keys.PublisherKeys, dry_run: bool, report: Report,
) -> None:
    where = f"{target.label}/{INDEX_NAME}"
    for _ in range(INDEX_ATTEMPTS):
        remote, token = target.read_index()
        crash_point("index-read")
        chosen = next_index(local, ours, remote, signing, where)
        if chosen is None:
            report.index = "already published"
            return
        data, serial = chosen
        if dry_run:
            report.index = f"would write serial {serial}"
            return
        try:
            target.write_index(data, token)
        except Conflict:
            continue  # re-read: merged, refused or found already published on the next round
        crash_point("index-written")
        report.index = f"wrote serial {serial}"
        return
    raise PublishError(f"{where} kept changing; gave up after {INDEX_ATTEMPTS} attempts")


def publish(dist: Path, to: str, endpoint_url: str | None = None, key_files: list[Path] | None = None,
            dry_run: bool = False, trusted_keys: list[str] | None = None) -> Report:
    index_path = dist / INDEX_NAME
    if not index_path.is_file():
        raise PublishError(f"{dist} has no signed index: run `relocpy index build` first")
    signing = keys.PublisherKeys.load(list(key_files or []), list(trusted_keys or []))
    local = index_path.read_bytes()
    ours = local_index(local, signing, str(index_path))
    if ours.expires <= datetime.now(timezone.utc):
        raise PublishError(f"{index_path} expired at {ours.expires.isoformat()}; rebuild it (relocpy index build)")
    target = open_target(to, endpoint_url)
    report = Report()
    try:
        files = files_to_publish(dist, ours, target)
        # Decide on the published index before the first upload, so that a refused
        # publish writes nothing; the conditional write settles what changes meanwhile.
        next_index(local, ours, target.read_index()[0], signing, f"{target.label}/{INDEX_NAME}")
        upload_files(target, files, dry_run, report)
        publish_index(local, ours, target, signing, dry_run, report)
    except RelocpyError:
        raise
    except Exception as exc:  # botocore and OS errors: one line, the cause named
        if not _is_transport_error(exc):
            raise
        raise PublishError(f"publishing to {target.label} failed: {exc}") from None
    for name in report.uploaded:
        info(f"{'would upload' if dry_run else 'uploaded'} {name}")
    return report


def _is_transport_error(exc: Exception) -> bool:
    if isinstance(exc, OSError):
        return True
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:  # no relocpy[s3]: not botocore's error
        return False
    return isinstance(exc, (BotoCoreError, ClientError))
