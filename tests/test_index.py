import json
from datetime import datetime, timedelta, timezone

import pytest

from relocpy import keys
from relocpy.errors import TrustError
from relocpy.index import Index
from relocpy.index_build import build_index
from relocpy.index_trust import SeenSerials, check_index
from support import LoopbackServer, one_error_line, relocpy


def build(dist, key, env, *extra, base_url="http://example.invalid/dl"):
    return relocpy("index", "build", str(dist), "--base-url", base_url, "--sign", str(key), *extra, env=env, check=True)


def test_build_writes_entries_and_signature(dist, signing_key, env):
    key, public = signing_key
    build(dist, key, env)
    index = Index.model_validate_json((dist / "index.json").read_bytes())
    assert index.serial == 1 and len(index.artifacts) == 1
    entry = index.artifacts[0]
    archive = next(dist.glob("*.tar.gz"))
    assert entry.name == archive.name and entry.size == archive.stat().st_size
    assert entry.url.endswith(archive.name.replace("+", "%2B"))
    assert entry.key.platform_tag == "manylinux_2_17_x86_64" and entry.flavor == "install_only"
    assert entry.platform.model_dump() == {"os": "linux", "arch": "x86_64", "libc": "glibc", "floor": "2.17"}
    assert entry.metadata_url.endswith(".tar.gz.json")
    assert index.expires - index.generated == timedelta(days=30)
    keys.verify((dist / "index.json").read_bytes(), (dist / "index.json.sig").read_bytes(), [keys.parse_trusted(public)])


def test_serial_increases_from_dist_and_from_previous(dist, signing_key, env, tmp_path):
    key, _ = signing_key
    build(dist, key, env)
    build(dist, key, env)
    assert json.loads((dist / "index.json").read_text())["serial"] == 2
    with LoopbackServer(dist) as server:
        other = tmp_path / "other"
        other.mkdir()
        for f in dist.glob("cpython-*"):
            (other / f.name).write_bytes(f.read_bytes())
        build(other, key, env, "--previous", server.url + "/index.json")
    assert json.loads((other / "index.json").read_text())["serial"] == 3


def test_previous_publish_directory_not_made_yet_is_the_first_release(dist, signing_key, env, tmp_path):
    build(dist, signing_key[0], env, "--previous", str(tmp_path / "site"))
    assert json.loads((dist / "index.json").read_text())["serial"] == 1
    assert "cannot read" in one_error_line(relocpy("index", "build", str(dist), "--base-url", "http://h/x", "--sign",
                                                   str(signing_key[0]), "--previous", str(tmp_path / "gone.json"),
                                                   env=env))


def test_two_keys_sign_for_rotation(dist, tmp_path, env):
    a, b = tmp_path / "a.key", tmp_path / "b.key"
    relocpy("keys", "generate", "--out", str(a), env=env, check=True)
    pub_b = relocpy("keys", "generate", "--out", str(b), env=env, check=True).stdout.strip()
    relocpy("index", "build", str(dist), "--base-url", "http://h/x", "--sign", str(a), "--sign", str(b), env=env, check=True)
    assert len(json.loads((dist / "index.json.sig").read_text())["signatures"]) == 2
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
    assert schema["title"] == "Index" and "artifacts" in schema["properties"]


def test_verify_cli_refusals(dist, signing_key, env, tmp_path):
    key, public = signing_key
    build(dist, key, env)
    ok = relocpy("index", "verify", str(dist / "index.json"), "--trusted-key", public, env=env, check=True)
    assert "serial 1" in ok.stdout
    stranger = relocpy("keys", "generate", "--out", str(tmp_path / "x.key"), env=env, check=True).stdout.strip()
    assert "not signed by a trusted key" in one_error_line(
        relocpy("index", "verify", str(dist), "--trusted-key", stranger, env=env))
    tampered = (dist / "index.json").read_text().replace('"size": ', '"size": 1')
    (dist / "index.json").write_text(tampered)
    assert "bad signature" in one_error_line(relocpy("index", "verify", str(dist), "--trusted-key", public, env=env))


def test_expired_and_rollback_refused(dist, signing_key, tmp_path):
    key, public = signing_key
    trusted = [keys.parse_trusted(public)]
    seen = SeenSerials(tmp_path / "state.json")
    now = datetime.now(timezone.utc)
    old = build_index(dist, "http://h/x", timedelta(days=1), now=now - timedelta(days=2))
    data = old.to_bytes()
    sig = keys.sign(data, [keys.load_private(key)])
    with pytest.raises(TrustError, match="expired"):
        check_index(data, sig, trusted, "src", seen)
    fresh = [build_index(dist, "http://h/x", timedelta(days=1)).model_copy(update={"serial": s}) for s in (5, 4)]
    signed = [(i.to_bytes(), keys.sign(i.to_bytes(), [keys.load_private(key)])) for i in fresh]
    assert check_index(*signed[0], trusted, "src", seen).serial == 5
    assert check_index(*signed[0], trusted, "src", seen).serial == 5  # the same serial again is fine
    with pytest.raises(TrustError, match="rollback"):
        check_index(*signed[1], trusted, "src", seen)
    assert check_index(*signed[1], trusted, "other-src", seen).serial == 4  # per index URL
    assert seen.get("src") == 5
