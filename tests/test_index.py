import json
from datetime import datetime, timedelta, timezone

import pytest

from relocpy import keys
from relocpy.errors import TrustError
from relocpy.index import Envelope, Index, seal
from relocpy.index_build import build_index
from relocpy.index_trust import SeenSerials, check_index, verify_signed
from support import LoopbackServer, one_error_line, relocpy


def build(dist, key, env, *extra, base_url="http://example.invalid/dl"):
    return relocpy("index", "build", str(dist), "--base-url", base_url, "--sign", str(key), *extra, env=env, check=True)


def payload(path):
    """The index inside index.json, its signatures not checked (tests only)."""
    return Index.model_validate_json(Envelope.model_validate_json(path.read_bytes()).signed)


def test_build_writes_one_file_holding_index_and_signature(dist, signing_key, env):
    key, public = signing_key
    build(dist, key, env)
    assert sorted(p.name for p in dist.glob("index.json*")) == ["index.json"]
    index, signers = verify_signed((dist / "index.json").read_bytes(), [keys.parse_trusted(public)], "index.json")
    assert signers == [keys.parse_trusted(public).key_id]
    assert index.serial == 1 and len(index.artifacts) == 1 and index.channel == "stable"
    entry = index.artifacts[0]
    archive = next(dist.glob("*.tar.gz"))
    assert entry.name == archive.name and entry.size == archive.stat().st_size
    assert entry.url.endswith(archive.name.replace("+", "%2B"))
    assert entry.key.platform_tag == "manylinux_2_17_x86_64" and entry.flavor == "install_only"
    assert entry.platform.model_dump() == {"os": "linux", "arch": "x86_64", "libc": "glibc", "floor": "2.17"}
    assert entry.metadata_url.endswith(".tar.gz.json")
    assert index.expires - index.generated == timedelta(days=30)
    envelope = json.loads((dist / "index.json").read_text())
    assert sorted(envelope) == ["schema_version", "signatures", "signed"] and envelope["schema_version"] == 3


def test_serial_increases_from_dist_and_from_previous(dist, signing_key, env, tmp_path):
    key, _ = signing_key
    build(dist, key, env)
    build(dist, key, env)
    assert payload(dist / "index.json").serial == 2
    with LoopbackServer(dist) as server:
        other = tmp_path / "other"
        other.mkdir()
        for f in dist.glob("cpython-*"):
            (other / f.name).write_bytes(f.read_bytes())
        build(other, key, env, "--previous", server.url + "/index.json")
    assert payload(other / "index.json").serial == 3


def test_previous_publish_directory_not_made_yet_is_the_first_release(dist, signing_key, env, tmp_path):
    build(dist, signing_key[0], env, "--previous", str(tmp_path / "site"))
    assert payload(dist / "index.json").serial == 1
    assert "cannot read" in one_error_line(relocpy("index", "build", str(dist), "--base-url", "http://h/x", "--sign",
                                                   str(signing_key[0]), "--previous", str(tmp_path / "gone.json"),
                                                   env=env))


def test_two_keys_sign_for_rotation(dist, tmp_path, env):
    a, b = tmp_path / "a.key", tmp_path / "b.key"
    relocpy("keys", "generate", "--out", str(a), env=env, check=True)
    pub_b = relocpy("keys", "generate", "--out", str(b), env=env, check=True).stdout.strip()
    relocpy("index", "build", str(dist), "--base-url", "http://h/x", "--sign", str(a), "--sign", str(b), env=env, check=True)
    assert len(json.loads((dist / "index.json").read_text())["signatures"]) == 2
    result = relocpy("index", "verify", str(dist), "--trusted-key", pub_b, env=env, check=True)
    assert result.stdout.startswith("ok:")


def test_build_refuses_archive_not_matching_metadata(dist, signing_key, env):
    archive = next(dist.glob("*.tar.gz"))
    data = bytearray(archive.read_bytes())
    data[-100] ^= 1
    archive.write_bytes(bytes(data))
    result = relocpy("index", "build", str(dist), "--base-url", "http://h/x", "--sign", str(signing_key[0]), env=env)
    assert "sha256" in one_error_line(result)
    assert not (dist / "index.json").exists()


def test_schema_is_json_schema(env):
    schema = json.loads(relocpy("index", "schema", env=env, check=True).stdout)
    assert schema["index.json"]["title"] == "Envelope" and "signatures" in schema["index.json"]["properties"]
    assert schema["signed"]["title"] == "Index" and "channel" in schema["signed"]["properties"]


def test_verify_cli_refusals(dist, signing_key, env, tmp_path):
    key, public = signing_key
    build(dist, key, env)
    ok = relocpy("index", "verify", str(dist / "index.json"), "--trusted-key", public, env=env, check=True)
    assert "serial 1" in ok.stdout
    stranger = relocpy("keys", "generate", "--out", str(tmp_path / "x.key"), env=env, check=True).stdout.strip()
    assert "not signed by a trusted key" in one_error_line(
        relocpy("index", "verify", str(dist), "--trusted-key", stranger, env=env))
    tampered = (dist / "index.json").read_text().replace('\\"size\\":', '\\"size\\":1')
    assert tampered != (dist / "index.json").read_text()
    (dist / "index.json").write_text(tampered)
    assert "bad signature" in one_error_line(relocpy("index", "verify", str(dist), "--trusted-key", public, env=env))


def sealed(index, key):
    return seal(index, [keys.load_private(key)])


def test_expired_and_rollback_refused(dist, signing_key, tmp_path):
    key, public = signing_key
    trusted = [keys.parse_trusted(public)]
    seen = SeenSerials(tmp_path / "state.json")
    now = datetime.now(timezone.utc)
    old = build_index(dist, "http://h/x", timedelta(days=1), "stable", now=now - timedelta(days=2))
    with pytest.raises(TrustError, match="expired"):
        check_index(sealed(old, key), trusted, "stable", seen, "src")
    fresh = [build_index(dist, "http://h/x", timedelta(days=1), "stable").model_copy(update={"serial": serial})
             for serial in (5, 4)]
    signed = [sealed(i, key) for i in fresh]
    assert check_index(signed[0], trusted, "stable", seen, "src").serial == 5
    assert check_index(signed[0], trusted, "stable", seen, "src").serial == 5  # the same serial again is fine
    with pytest.raises(TrustError, match="rollback"):
        check_index(signed[1], trusted, "stable", seen, "src")
    with pytest.raises(TrustError, match="rollback"):
        check_index(signed[1], trusted, "stable", seen, "another-location")  # per channel, not per location
    assert seen.floor("stable", [trusted[0].key_id]) == 5


def test_channel_is_signed_and_checked(dist, signing_key, env):
    key, public = signing_key
    build(dist, key, env, "--channel", "nightly")
    assert payload(dist / "index.json").channel == "nightly"
    line = one_error_line(relocpy("index", "verify", str(dist), "--trusted-key", public, env=env))
    assert "channel 'nightly', not 'stable'" in line
    ok = relocpy("index", "verify", str(dist), "--trusted-key", public, "--channel", "nightly", env=env, check=True)
    assert "channel nightly serial 1" in ok.stdout


@pytest.mark.parametrize(("flag", "expect"), [
    (["--expires", "366d"], "longer than the 365d"),
    (["--expires", "9000h"], "longer than the 365d"),
    (["--channel", "Stable"], "bad channel name"),
    (["--channel", "../x"], "bad channel name"),
])
def test_build_refuses_bad_expiry_and_channel(dist, signing_key, env, flag, expect):
    result = relocpy("index", "build", str(dist), "--base-url", "http://h/x", "--sign", str(signing_key[0]), *flag,
                     env=env)
    assert expect in one_error_line(result) and result.returncode == 2
    assert not (dist / "index.json").exists()
