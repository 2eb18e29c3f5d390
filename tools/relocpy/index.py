"""The signed index's format, shared by its two halves.

`index.json` is one signed envelope:

    {"schema_version": 3,
     "signed": "<the index itself: JSON text, exactly the bytes that were signed>",
     "signatures": [{"key_id": "<16 hex>", "signature": "<base64>"}, ...]}

The index and its signatures are one object, so one atomic write (a rename
on a directory, one conditional PUT on S3) commits both: no crash and no
racing publisher can leave an index beside another one's signature. The
signatures cover the payload text exactly as stored, so checking them
involves no re-serialisation, and nothing outside `signed` is trusted.

The payload (`Index`) names its channel, serial, generation and expiry and
lists every artifact with its hash and identity. The publisher half
(index_build.py, publish.py) makes and seals one; the client half
(index_trust.py) opens one only when a pinned key signed it, it is of the
channel the client expects, it has not expired and its serial did not go back.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from relocpy import keys
from relocpy.errors import IndexError_
from relocpy.models import ArtifactKey, Platform

INDEX_NAME = "index.json"
INDEX_SCHEMA_VERSION = 3  # 3: one envelope holding the payload text and its signatures; the channel is signed
MAX_INDEX_BYTES = 32 << 20  # an index larger than this is an attack, not a release
MAX_SIGNATURES = 16  # more is an attack on the verifier, not a key rotation
MAX_LIFETIME = timedelta(days=365)  # the longest `expires - generated` a publisher may sign or a client accepts
MAX_SERIAL = 2**63 - 1  # what every JSON reader can hold as an integer
DEFAULT_CHANNEL = "stable"
CHANNEL_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"


def channel_name(text: str) -> str:
    """A channel name as given by a user, checked: lower case letters, digits, '.', '_' and '-'."""
    if not re.match(CHANNEL_PATTERN, text):
        raise IndexError_(f"bad channel name {text!r}: use lower case letters, digits, '.', '_' or '-' (at most 64)")
    return text


def next_serial(serial: int) -> int:
    if serial >= MAX_SERIAL:
        raise IndexError_(f"serial {serial} cannot be continued (the largest is {MAX_SERIAL})")
    return serial + 1


class IndexEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str  # archive file name: key.filename, checked
    key: ArtifactKey  # the identity clients select by: version, platform (os/arch/libc/floor), variant, flavor
    url: str  # absolute, or relative to the index's own URL
    sha256: str
    size: int
    abi_tag: str
    build_options: str  # canonical option set, e.g. pgo+lto
    metadata_url: str
    metadata_sha256: str

    @model_validator(mode="after")
    def _name_spells_the_key(self) -> IndexEntry:
        if self.name != self.key.filename:
            raise ValueError(f"name {self.name} does not spell its key ({self.key.filename})")
        return self

    # The key's parts, by the names clients read them.
    @property
    def python_version(self) -> str:
        return self.key.version

    @property
    def variant(self) -> str | None:
        return self.key.variant

    @property
    def flavor(self) -> str:
        return self.key.flavor

    @property
    def build_tag(self) -> str:
        return self.key.build_tag

    @property
    def platform(self) -> Platform:
        return self.key.platform


class Index(BaseModel):
    """The signed payload."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[3] = INDEX_SCHEMA_VERSION
    channel: str = Field(pattern=CHANNEL_PATTERN)  # what a client expects: another channel's index is refused
    serial: int = Field(ge=1, le=MAX_SERIAL)
    generated: AwareDatetime
    expires: AwareDatetime
    artifacts: list[IndexEntry]

    @model_validator(mode="after")
    def _consistent(self) -> Index:
        if self.expires < self.generated:
            raise ValueError("expires is before generated")
        names = [entry.name for entry in self.artifacts]
        if len(names) != len(set(names)):
            raise ValueError("an artifact name is listed twice")
        return self

    def payload(self) -> bytes:
        """The bytes that are signed: compact JSON (`relocpy index verify --json` shows it readably)."""
        return json.dumps(self.model_dump(mode="json"), separators=(",", ":")).encode()


class Envelope(BaseModel):
    """index.json as stored: the payload text and the signatures over its UTF-8 bytes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[3]
    signed: str
    signatures: list[keys.Signature] = Field(max_length=MAX_SIGNATURES)

    def payload(self) -> bytes:
        return self.signed.encode("utf-8", "surrogatepass")  # a lone surrogate cannot match a signature


def seal(index: Index, private_keys: list) -> bytes:
    """index.json's bytes: the index, signed by every key given."""
    if not private_keys:
        raise IndexError_("an index must be signed: pass --sign KEYFILE")
    payload = index.payload()
    envelope = Envelope(schema_version=INDEX_SCHEMA_VERSION, signed=payload.decode(),
                        signatures=keys.sign(payload, private_keys))
    return (json.dumps(envelope.model_dump(mode="json"), indent=2) + "\n").encode()


def open_envelope(data: bytes, where: str) -> Envelope:
    """The envelope of index.json, its signatures not yet checked."""
    if len(data) > MAX_INDEX_BYTES:
        raise IndexError_(f"{where}: larger than {MAX_INDEX_BYTES} bytes; refusing")
    try:
        return Envelope.model_validate_json(data)
    except ValidationError as exc:
        errors = exc.errors()
        version = next((e for e in errors if tuple(e["loc"]) == ("schema_version",)), None)
        if version is not None and version["type"] != "missing":
            found = repr(version["input"])[:20]
            raise IndexError_(f"{where}: index schema version {found}; this relocpy reads version "
                              f"{INDEX_SCHEMA_VERSION} only (rebuild the index, or use a matching relocpy)") from None
        raise IndexError_(f"{where}: not a relocpy index ({_first_error(errors)})") from None


def parse_payload(envelope: Envelope, where: str) -> Index:
    """The index inside an envelope: parse it only once its signatures were checked
    (or, when publish was given no key, for the publisher's own dist/index.json)."""
    try:
        return Index.model_validate_json(envelope.payload())
    except ValidationError as exc:
        raise IndexError_(f"{where}: not a relocpy index ({_first_error(exc.errors())})") from None


def _first_error(errors: list) -> str:
    first = errors[0]
    where = ".".join(str(p) for p in first["loc"]) or "top level"
    return f"{where}: {first['msg']}"


def write_atomic(path: Path, data: bytes) -> None:
    """Readers see the old bytes or the new ones, also after a crash or a power cut."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with tmp.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    sync_directory(path.parent)


def sync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
