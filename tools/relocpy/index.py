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

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from relocpy.errors import IndexError_
from relocpy.models import ArtifactKey

INDEX_NAME = "index.json"
SIG_SUFFIX = ".sig"
INDEX_SCHEMA_VERSION = 1
MAX_INDEX_BYTES = 32 << 20  # an index larger than this is an attack, not a release


class IndexEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str  # archive file name (ArtifactKey.filename)
    url: str  # absolute, or relative to the index's own URL
    sha256: str
    size: int
    implementation: str
    python_version: str
    build_tag: str
    abi_tag: str
    platform_tag: str
    variant: str | None  # None: the default variant
    build_options: str  # canonical option set, e.g. pgo+lto
    flavor: str
    metadata_url: str
    metadata_sha256: str

    @property
    def key(self) -> ArtifactKey:
        return ArtifactKey.parse(self.name)


class Index(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = INDEX_SCHEMA_VERSION
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
    tmp.write_bytes(data)
    os.replace(tmp, path)
