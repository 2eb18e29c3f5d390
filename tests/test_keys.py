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
    signatures = keys.sign(b"payload", private)
    assert len(signatures) == 2
    assert keys.verify(b"payload", signatures, [keys.parse_trusted(new)]) == [keys.parse_trusted(new).key_id]
    assert keys.verify(b"payload", signatures, [keys.parse_trusted(old)]) == [keys.parse_trusted(old).key_id]
    both = [keys.parse_trusted(old), keys.parse_trusted(new)]
    assert keys.verify(b"payload", signatures, both) == sorted(k.key_id for k in both)


def test_unknown_key_and_tampered_data_are_refused(tmp_path):
    signer = keys.generate(tmp_path / "s.key")
    stranger = keys.generate(tmp_path / "x.key")
    signatures = keys.sign(b"payload", [keys.load_private(tmp_path / "s.key")])
    with pytest.raises(TrustError, match="not signed by a trusted key"):
        keys.verify(b"payload", signatures, [keys.parse_trusted(stranger)])
    with pytest.raises(TrustError, match="bad signature"):
        keys.verify(b"payloaD", signatures, [keys.parse_trusted(signer)])


def test_every_signature_by_a_trusted_key_must_hold(tmp_path):
    """A good signature does not excuse a bad one beside it by another key the client trusts."""
    a, b = keys.generate(tmp_path / "a.key"), keys.generate(tmp_path / "b.key")
    good = keys.sign(b"payload", [keys.load_private(tmp_path / "a.key")])
    other_bytes = keys.sign(b"other", [keys.load_private(tmp_path / "b.key")])
    with pytest.raises(TrustError, match="bad signature by key " + keys.parse_trusted(b).key_id):
        keys.verify(b"payload", good + other_bytes, [keys.parse_trusted(a), keys.parse_trusted(b)])
    assert keys.verify(b"payload", good + other_bytes, [keys.parse_trusted(a)]) == [keys.parse_trusted(a).key_id]


def test_publisher_keys_trust_their_own_public_halves(tmp_path):
    line = keys.generate(tmp_path / "a.key")
    extra = keys.generate(tmp_path / "old.key")
    loaded = keys.PublisherKeys.load([tmp_path / "a.key"], [extra])
    assert [k.key_id for k in loaded.trusted] == [keys.parse_trusted(line).key_id, keys.parse_trusted(extra).key_id]
    assert len(loaded.private) == 1
