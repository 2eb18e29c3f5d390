"""Ed25519 signing keys, trusted public keys and detached signature files.

A public key is written as one line, `ed25519:<base64 of the 32 raw bytes>`;
its key id is the first 16 hex digits of the sha256 of those bytes. A
signature file is JSON holding one or more signatures over the same bytes,
so that an index can be signed by an old and a new key while keys rotate.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, ValidationError

from relocpy.errors import KeyFileError, SignatureMismatch, TrustError

PREFIX = "ed25519:"
SIGNATURE_FORMAT = 1


class Signature(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    key_id: str
    algorithm: str = "ed25519"
    signature: str  # base64


class SignatureFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: int = SIGNATURE_FORMAT
    signatures: list[Signature]


class TrustedKey(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    key_id: str
    public: Ed25519PublicKey


def key_id(raw_public: bytes) -> str:
    return hashlib.sha256(raw_public).hexdigest()[:16]


def generate(out: Path) -> str:
    """Write a new private key (mode 0600, never over an existing file); return its public line."""
    from cryptography.hazmat.primitives import serialization  # key files only; verifying needs none

    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL + mode at creation: the key is never readable by others, not even briefly.
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{out} exists; refusing to overwrite a key") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    return public_line(private.public_key())


def load_private(path: Path) -> Ed25519PrivateKey:
    from cryptography.hazmat.primitives import serialization  # key files only; verifying needs none

    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except OSError as exc:
        raise KeyFileError(f"cannot read key {path}: {exc.strerror}") from None
    except (ValueError, TypeError):
        raise KeyFileError(f"{path} is not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path} is not an Ed25519 key")
    return key


def public_line(public: Ed25519PublicKey) -> str:
    from cryptography.hazmat.primitives import serialization  # key files only; verifying needs none

    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return PREFIX + base64.b64encode(raw).decode()


def parse_trusted(value: str) -> TrustedKey:
    """`ed25519:<base64>`, or a file holding that line."""
    text = value.strip()
    if not text.startswith(PREFIX):
        path = Path(text).expanduser()
        if not path.is_file():
            raise KeyFileError(f"trusted key {value!r} is neither 'ed25519:<base64>' nor a file")
        text = path.read_bytes().decode("utf-8", "replace").strip()  # not UTF-8: not a key line either
        if not text.startswith(PREFIX):
            raise KeyFileError(f"{path} does not hold an 'ed25519:<base64>' public key")
    try:
        raw = base64.b64decode(text[len(PREFIX):], validate=True)
        public = Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError):
        raise KeyFileError(f"malformed public key {text!r}") from None
    return TrustedKey(key_id=key_id(raw), public=public)


def sign(data: bytes, keys: list[Ed25519PrivateKey]) -> bytes:
    """A signature file over data, one signature per key."""
    from cryptography.hazmat.primitives import serialization  # key files only; verifying needs none

    signatures = []
    for private in keys:
        raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        sig = base64.b64encode(private.sign(data)).decode()
        signatures.append(Signature(key_id=key_id(raw), signature=sig))
    body = SignatureFile(signatures=signatures).model_dump(mode="json")
    return (json.dumps(body, indent=2) + "\n").encode()


def verify(data: bytes, signature_file: bytes, trusted: list[TrustedKey]) -> str:
    """Return the id of a trusted key with a valid signature over data, or raise TrustError."""
    if not trusted:
        raise TrustError("no trusted key given (--trusted-key, RELOCPY_TRUSTED_KEYS or the config file)")
    try:
        parsed = SignatureFile.model_validate_json(signature_file)
    except ValidationError:
        raise TrustError("signature file is malformed") from None
    by_id = {key.key_id: key for key in trusted}
    known = [s for s in parsed.signatures if s.key_id in by_id and s.algorithm == "ed25519"]
    if not known:
        ids = ", ".join(s.key_id for s in parsed.signatures) or "none"
        raise TrustError(f"index is not signed by a trusted key (signed by: {ids})")
    for entry in known:
        try:
            by_id[entry.key_id].public.verify(base64.b64decode(entry.signature), data)
            return entry.key_id
        except (InvalidSignature, binascii.Error, ValueError):
            continue
    raise SignatureMismatch("bad signature: the index does not match its signature (tampered or corrupt)")
