import json
import stat

import pytest

from relocpy import keys
from relocpy.errors import KeyFileError, TrustError
from support import relocpy


def test_generate_writes_private_key_0600_and_prints_public_line(tmp_path, env):
    key = tmp_path / "k" / "release.key"
    out = relocpy("keys", "generate", "--out", str(key), env=env, check=True).stdout.strip()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert out.startswith("ed25519:") and len(out.splitlines()) == 1
    again = relocpy("keys", "public", str(key), env=env, check=True).stdout.strip()
    assert again == out


def test_generate_refuses_to_overwrite(tmp_path, env):
    key = tmp_path / "release.key"
    relocpy("keys", "generate", "--out", str(key), env=env, check=True)
    before = key.read_bytes()
    result = relocpy("keys", "generate", "--out", str(key), env=env)
    assert result.returncode == 2 and "refusing to overwrite" in result.stderr
    assert key.read_bytes() == before


def test_trusted_key_from_string_or_file_has_same_id(tmp_path):
    line = keys.generate(tmp_path / "a.key")
    (tmp_path / "a.pub").write_text(line + "\n")
    assert keys.parse_trusted(line).key_id == keys.parse_trusted(str(tmp_path / "a.pub")).key_id
    assert len(keys.parse_trusted(line).key_id) == 16


def test_malformed_trusted_key_is_a_user_error(tmp_path):
    with pytest.raises(KeyFileError):
        keys.parse_trusted("ed25519:not-base64!")
    with pytest.raises(KeyFileError):
        keys.parse_trusted(str(tmp_path / "missing.pub"))


def test_rotation_either_signature_verifies(tmp_path):
    old, new = keys.generate(tmp_path / "old.key"), keys.generate(tmp_path / "new.key")
    private = [keys.load_private(tmp_path / "old.key"), keys.load_private(tmp_path / "new.key")]
    sig = keys.sign(b"payload", private)
    assert len(json.loads(sig)["signatures"]) == 2
    assert keys.verify(b"payload", sig, [keys.parse_trusted(new)]) == keys.parse_trusted(new).key_id
    assert keys.verify(b"payload", sig, [keys.parse_trusted(old)]) == keys.parse_trusted(old).key_id


def test_unknown_key_and_tampered_data_are_refused(tmp_path):
    signer = keys.generate(tmp_path / "s.key")
    stranger = keys.generate(tmp_path / "x.key")
    sig = keys.sign(b"payload", [keys.load_private(tmp_path / "s.key")])
    with pytest.raises(TrustError, match="not signed by a trusted key"):
        keys.verify(b"payload", sig, [keys.parse_trusted(stranger)])
    with pytest.raises(TrustError, match="bad signature"):
        keys.verify(b"payloaD", sig, [keys.parse_trusted(signer)])
