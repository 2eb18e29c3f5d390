"""Verbs for keys, the signed index, the uv export and publishing."""

from __future__ import annotations

import json
from pathlib import Path

from invoke import task

from relocpy import keys
from relocpy.cli.options import TRUST_HELP
from relocpy.errors import RelocpyError
from relocpy.index import (
    Index, SeenSerials, build_index, index_location, load_verified, parse_duration, write_signed,
)
from relocpy.index import write_atomic
from relocpy.progress import info
from relocpy.publish import publish as publish_dist
from relocpy.settings import ClientSettings
from relocpy.uvexport import export_bytes



@task(name="generate", help={"out": "where to write the new private key (mode 0600)"})
def keys_generate(c, out):
    """Make an Ed25519 signing key; prints its public key line."""
    print(keys.generate(Path(out)))


@task(name="public", positional=["keyfile"], help={"keyfile": "private key file"})
def keys_public(c, keyfile):
    """Print the public key of a private key file: one line, ed25519:<base64>."""
    print(keys.public_line(keys.load_private(Path(keyfile)).public_key()))


@task(
    name="build",
    positional=["dist"],
    iterable=["sign"],
    help={
        "dist": "directory holding the archives and their <archive>.json metadata",
        "base_url": "URL the artifacts will be served from",
        "sign": "private key file to sign with (repeatable, to rotate keys)",
        "expires": "how long clients accept the index: e.g. 30d, 12h (default 30d)",
        "previous": "the currently published index (URL or path): the new serial is its serial + 1",
    },
)
def index_build(c, dist, base_url, sign=None, expires="30d", previous=None):
    """Write DIST/index.json and its detached signature DIST/index.json.sig."""
    if not sign:
        raise RelocpyError("an index must be signed: pass --sign KEYFILE")
    for key_file in sign:  # a bad key fails before the archives are hashed
        keys.load_private(Path(key_file))
    dist_path = Path(dist)
    index = build_index(dist_path, base_url, parse_duration(expires), previous)
    write_signed(dist_path, index, [Path(k) for k in sign])
    print(f"index serial {index.serial}: {len(index.artifacts)} artifacts, expires {index.expires.isoformat()}, "
          f"signed by {len(sign)} key(s) -> {dist_path / 'index.json'}")


def _verify(index: str, trusted_key) -> tuple[str, Index]:
    settings = ClientSettings.resolve(trusted_keys=list(trusted_key or []))
    trusted = [keys.parse_trusted(k) for k in settings.trusted_keys]
    return load_verified(index, trusted, SeenSerials(settings.state_file), settings.fetch.timeout)


@task(name="verify", positional=["index"], iterable=["trusted_key"],
      help={"index": "index.json path, its directory, or URL", **TRUST_HELP})
def index_verify(c, index, trusted_key=None):
    """Check the signature, expiry and serial of an index."""
    source, parsed = _verify(index, trusted_key)
    print(f"ok: {source} serial {parsed.serial}, {len(parsed.artifacts)} artifacts, expires {parsed.expires.isoformat()}")


@task(name="schema")
def index_schema(c):
    """Print the JSON Schema of index.json."""
    print(json.dumps(Index.model_json_schema(), indent=2))


@task(name="export-uv", positional=["index"], iterable=["trusted_key"],
      help={"index": "index.json path, its directory, or URL", "out": "where to write uv's JSON", **TRUST_HELP})
def index_export_uv(c, index, out, trusted_key=None):
    """Write uv's download-metadata JSON for a verified index (uv --python-downloads-json-url)."""
    source, parsed = _verify(index, trusted_key)
    write_atomic(Path(out).absolute(), export_bytes(parsed, source))
    print(f"wrote {out} from {index_location(index)} serial {parsed.serial}")


@task(
    positional=["dist"],
    iterable=["sign"],
    help={
        "dist": "directory holding archives, metadata and the signed index",
        "to": "a directory, or s3://BUCKET/PREFIX",
        "endpoint_url": "S3 endpoint for R2, MinIO and other S3-speaking stores",
        "dry_run": "show what would be uploaded; write nothing",
        "sign": "key file(s): if the published index gained entries meanwhile, merge and re-sign",
    },
)
def publish(c, dist, to, endpoint_url=None, dry_run=False, sign=None):
    """Upload artifacts and metadata, then the index and its signature."""
    report = publish_dist(Path(dist), to, endpoint_url, [Path(k) for k in sign or []], dry_run)
    info(f"{len(report.uploaded)} {'to upload' if dry_run else 'uploaded'}, {len(report.skipped)} already there; index: {report.index}")


COLLECTIONS = {
    "keys": [keys_generate, keys_public],
    "index": [index_build, index_verify, index_schema, index_export_uv],
}
TASKS = [publish]
