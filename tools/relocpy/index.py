"""The signed index's format, shared by its two halves.

`index.json` lists every artifact with its hash and identity; `index.json.sig`
holds Ed25519 signatures over its exact bytes. The publisher half
(index_build.py) makes one from a dist directory; the client half
(index_trust.py) accepts one only when a pinned key signed it, it has not
expired, and its serial is not lower than the highest seen from the same
location.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from relocpy.errors import IndexError_
from relocpy.models import ArtifactKey, Platform

INDEX_NAME = "index.json"
SIG_SUFFIX = ".sig"
INDEX_SCHEMA_VERSION = 2  # 2: each entry carries its structured key
MAX_INDEX_BYTES = 32 << 20  # an index larger than this is an attack, not a release


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
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[2] = INDEX_SCHEMA_VERSION
    serial: int = Field(ge=1)
    generated: datetime
    expires: datetime
    artifacts: list[IndexEntry]

    def to_bytes(self) -> bytes:
        return (json.dumps(self.model_dump(mode="json"), indent=2) + "\n").encode()


def parse_index(data: bytes, where: str) -> Index:
    try:
        return Index.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "top level"
        raise IndexError_(f"{where}: not a relocpy index ({loc}: {first['msg']})") from None


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:  # a full disk, a directory in the way, Ctrl-C: no half-written file left
        tmp.unlink(missing_ok=True)
        raise
