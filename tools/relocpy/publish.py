"""Upload a dist directory to a directory or an S3 bucket, index last.

Artifacts and their metadata go first; a name already there with the same
sha256 is skipped, with other bytes it is refused. The index is the commit
point: a client sees the new artifacts only once the index names them. The
index write is conditional (S3: If-Match on the ETag read, If-None-Match '*'
when there was none; a directory: a lock and an atomic rename), so two
publishers racing cannot drop each other's entries: the loser re-reads and,
given signing keys, merges and re-signs, or stops with a clear error. A
re-run after a crash skips what is already there and finishes the job.
"""

from __future__ import annotations

import fcntl
import hashlib
import re
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlparse

from relocpy import keys
from relocpy.errors import PublishError
from relocpy.extras import require
from relocpy.hashing import file_sha256
from relocpy.index import INDEX_NAME, SIG_SUFFIX, Index, parse_index, write_atomic
from relocpy.progress import info

INDEX_ATTEMPTS = 5


class Conflict(Exception):
    """The remote index changed between our read and our write."""


@dataclass
class Report:
    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    index: str = ""  # what happened to the index


# --- targets -------------------------------------------------------------------------


class DirTarget:
    def __init__(self, root: Path):
        self.root = root
        self.label = str(root)

    def existing_sha(self, name: str) -> str | None:
        path = self.root / name
        return file_sha256(path) if path.is_file() else None

    def upload(self, name: str, path: Path, sha256: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{name}.{uuid.uuid4().hex}.part"
        shutil.copyfile(path, tmp)
        tmp.replace(self.root / name)

    def read_index(self) -> tuple[bytes | None, str | None]:
        path = self.root / INDEX_NAME
        if not path.is_file():
            return None, None
        data = path.read_bytes()
        return data, hashlib.sha256(data).hexdigest()

    def write_index(self, data: bytes, signature: bytes, token: str | None) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".publish.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.read_index()[1] != token:
                raise Conflict()
            write_atomic(self.root / INDEX_NAME, data)
            write_atomic(self.root / (INDEX_NAME + SIG_SUFFIX), signature)


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
        with path.open("rb") as body:
            try:
                # If-None-Match: a racing publisher of the same name cannot be overwritten.
                self.client.put_object(
                    Bucket=self.bucket, Key=self._key(name), Body=body, IfNoneMatch="*",
                    Metadata={"sha256": sha256}, ContentType=_content_type(name),
                )
            except self.client.exceptions.ClientError as exc:
                if _status(exc) not in (409, 412) or self.existing_sha(name) != sha256:
                    raise

    def read_index(self) -> tuple[bytes | None, str | None]:
        try:
            got = self.client.get_object(Bucket=self.bucket, Key=self._key(INDEX_NAME))
        except self.client.exceptions.ClientError as exc:
            if _status(exc) == 404:
                return None, None
            raise
        return got["Body"].read(), got["ETag"]

    def write_index(self, data: bytes, signature: bytes, token: str | None) -> None:
        condition = {"IfMatch": token} if token else {"IfNoneMatch": "*"}
        try:
            self.client.put_object(
                Bucket=self.bucket, Key=self._key(INDEX_NAME), Body=data,
                ContentType="application/json", CacheControl="no-cache", **condition,
            )
        except self.client.exceptions.ClientError as exc:
            if _status(exc) in (409, 412):
                raise Conflict() from None
            raise
        self.client.put_object(
            Bucket=self.bucket, Key=self._key(INDEX_NAME + SIG_SUFFIX), Body=signature,
            ContentType="application/json", CacheControl="no-cache",
        )


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
    data, _token = open_target(location).read_index()
    return data


def local_files(dist: Path, index: Index) -> list[tuple[str, Path, str]]:
    """(name, path, sha256) of every file the index names, checked against it."""
    files = []
    for entry in index.artifacts:
        for name, sha in ((entry.name, entry.sha256), (entry.name + ".json", entry.metadata_sha256)):
            path = dist / name
            if not path.is_file():
                raise PublishError(f"{name} is in {INDEX_NAME} but missing from {dist}")
            if file_sha256(path) != sha:
                raise PublishError(f"{name} in {dist} does not match {INDEX_NAME}; rebuild the index")
            files.append((name, path, sha))
    return files


def upload_files(target, files, dry_run: bool, report: Report) -> None:
    for name, path, sha in files:
        remote = target.existing_sha(name)
        if remote == sha:
            report.skipped.append(name)
            continue
        if remote is not None:
            raise PublishError(f"{name} already exists at {target.label} with other content (sha256 {remote}); refusing to replace it")
        if not dry_run:
            target.upload(name, path, sha)
        report.uploaded.append(name)


def next_index(
    local: bytes, remote: bytes | None, key_files: list[Path], where: str,
) -> tuple[bytes, bytes | None] | None:
    """What to write over the remote index: None if it is already ours.

    Returns (index bytes, signature or None to use DIST's own signature).
    """
    if remote is None:
        return local, None
    if remote == local:
        return None
    ours, theirs = parse_index(local, INDEX_NAME), parse_index(remote, where)
    names = {e.name for e in ours.artifacts}
    missing = [e for e in theirs.artifacts if e.name not in names]
    if not missing and ours.serial > theirs.serial:
        return local, None
    if not key_files:
        raise PublishError(
            f"the index at {where} (serial {theirs.serial}) has {len(missing)} entries not in ours "
            f"(serial {ours.serial}); rebuild with --previous, or pass --sign to merge"
        )
    merged = Index(
        serial=max(ours.serial, theirs.serial + 1),
        generated=datetime.now(timezone.utc).replace(microsecond=0),
        expires=ours.expires,
        artifacts=sorted([*ours.artifacts, *missing], key=lambda e: e.name),
    )
    data = merged.to_bytes()
    return data, keys.sign(data, [keys.load_private(p) for p in key_files])


def publish_index(dist: Path, target, key_files: list[Path], dry_run: bool, report: Report) -> None:
    local = (dist / INDEX_NAME).read_bytes()
    local_sig = (dist / (INDEX_NAME + SIG_SUFFIX)).read_bytes()
    for _ in range(INDEX_ATTEMPTS):
        remote, token = target.read_index()
        chosen = next_index(local, remote, key_files, f"{target.label}/{INDEX_NAME}")
        if chosen is None:
            report.index = "already published"
            return
        data, signature = chosen
        serial = parse_index(data, INDEX_NAME).serial
        if dry_run:
            report.index = f"would write serial {serial}"
            return
        try:
            target.write_index(data, signature or local_sig, token)
        except Conflict:
            if not key_files:
                raise PublishError(f"{target.label}/{INDEX_NAME} changed while publishing; nothing was overwritten: run again") from None
            continue
        if signature is not None:  # merged: keep DIST in step with what was published
            write_atomic(dist / INDEX_NAME, data)
            write_atomic(dist / (INDEX_NAME + SIG_SUFFIX), signature)
        report.index = f"wrote serial {serial}"
        return
    raise PublishError(f"{target.label}/{INDEX_NAME} kept changing; gave up after {INDEX_ATTEMPTS} attempts")


def publish(dist: Path, to: str, endpoint_url: str | None = None, key_files: list[Path] | None = None,
            dry_run: bool = False) -> Report:
    index_path = dist / INDEX_NAME
    if not index_path.is_file() or not (dist / (INDEX_NAME + SIG_SUFFIX)).is_file():
        raise PublishError(f"{dist} has no signed index: run `relocpy index build` first")
    index = parse_index(index_path.read_bytes(), str(index_path))
    target = open_target(to, endpoint_url)
    report = Report()
    try:
        upload_files(target, local_files(dist, index), dry_run, report)
        publish_index(dist, target, list(key_files or []), dry_run, report)
    except PublishError:
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
