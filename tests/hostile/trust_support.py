"""Helpers of the trust-chain corpus: keys, indexes sealed in-process (so a
case can forge exactly the bytes it wants), small dists, the real CLI."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

from relocpy import keys
from relocpy.index import Envelope, Index, IndexEntry
from relocpy.index_trust import verify_signed
from relocpy.models import ArtifactKey
from support import artifact_key, member, tar_with, write_metadata

CLI_TIMEOUT = 60  # seconds: every refusal here is quick; a hang is a failure, not a slow pass


class Signer:
    """A key made in-process: its private half and the public line clients pin."""

    def __init__(self, path: Path):
        self.path = path
        self.public = keys.generate(path)
        self.private = keys.load_private(path)
        self.key_id = keys.parse_trusted(self.public).key_id

    def sign(self, payload: bytes) -> list[dict]:
        return [s.model_dump() for s in keys.sign(payload, [self.private])]


def entry(version: str = "3.99.1", sha: str = "a" * 64) -> IndexEntry:
    key = ArtifactKey(version=version, build_tag="20261124", platform_tag="manylinux_2_17_x86_64",
                      flavor="install_only")
    return IndexEntry(name=key.filename, key=key, url=key.filename.replace("+", "%2B"), sha256=sha, size=1,
                      abi_tag="cp399", build_options="pgo+lto", metadata_url=key.filename + ".json",
                      metadata_sha256="b" * 64)


def index(serial: int = 5, channel: str = "stable", lifetime: timedelta = timedelta(days=1),
          generated: datetime | None = None, artifacts: list[IndexEntry] | None = None) -> Index:
    generated = (generated or datetime.now(timezone.utc)).replace(microsecond=0)
    return Index(channel=channel, serial=serial, generated=generated, expires=generated + lifetime,
                 artifacts=[entry()] if artifacts is None else artifacts)


def envelope(signed: str | bytes, signatures: list[dict], **fields) -> bytes:
    """index.json's bytes around any payload and any signatures (fields override or add keys)."""
    text = signed.decode("utf-8", "surrogatepass") if isinstance(signed, bytes) else signed
    body = {"schema_version": 3, "signed": text, "signatures": signatures, **fields}
    return json.dumps(body).encode()


def sealed(payload: bytes, *signers: Signer) -> bytes:
    return envelope(payload, [s for signer in signers for s in signer.sign(payload)])


def unverified(index_bytes: bytes) -> Index:
    """The payload of index.json, its signatures not checked (to name what a target holds)."""
    return Index.model_validate_json(Envelope.model_validate_json(index_bytes).signed)


def verified(index_bytes: bytes, signer: Signer) -> Index:
    return verify_signed(index_bytes, [keys.parse_trusted(signer.public)], "index.json")[0]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def run(*args: str, env: dict[str, str], timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess:
    """The real `python -m relocpy`, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "relocpy", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def small_dist(root: Path, version: str = "3.99.1", content: bytes | None = None) -> Path:
    """A dist with one tiny artifact of its own (content: the bytes that make it differ)."""
    dist = root / f"dist-{version}-{hashlib.sha256(content or b'').hexdigest()[:8]}"
    dist.mkdir(parents=True)
    key = artifact_key(version=version)
    tar_with(dist / key.filename, [member("python/bin/python3", data=content or version.encode())])
    write_metadata(dist / key.filename, key)
    return dist
