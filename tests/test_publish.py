"""publish to a directory and to a real S3-speaking server (moto) on loopback."""

import json
import subprocess
import sys
import uuid
from pathlib import Path

import boto3
import pytest

from relocpy import keys
from relocpy.errors import PublishError
from relocpy.index import Envelope, Index
from relocpy.index_trust import verify_signed
from relocpy.publish import Conflict, Report, S3Target, local_index, publish_index
from support import artifact_key, one_error_line, relocpy, tar_with, member, write_metadata

BASE = "http://downloads.example.invalid/python"


def build(dist, key, env, *extra):
    relocpy("index", "build", str(dist), "--base-url", BASE, "--sign", str(key), *extra, env=env, check=True)


def second_dist(tmp_path, version="3.99.2"):
    """Another dist with one small artifact of its own."""
    other = tmp_path / f"dist-{version}"
    other.mkdir()
    key = artifact_key(version=version)
    tar_with(other / key.filename, [member("python/bin/python3", data=version.encode())])
    write_metadata(other / key.filename, key)
    return other


def payload(index_bytes) -> Index:
    """The index inside index.json's bytes, its signatures not checked (tests only)."""
    return Index.model_validate_json(Envelope.model_validate_json(index_bytes).signed)


def names(index_bytes):
    return sorted(e.name for e in payload(index_bytes).artifacts)


def verified(index_bytes, public) -> Index:
    return verify_signed(index_bytes, [keys.parse_trusted(public)], "index.json")[0]


# --- a directory target ---------------------------------------------------------------


def test_dir_publish_rerun_and_refusal(dist, signing_key, env, tmp_path):
    key, public = signing_key
    target = tmp_path / "site"
    build(dist, key, env)
    first = relocpy("publish", str(dist), "--to", str(target), env=env, check=True)
    assert "2 uploaded" in first.stderr and "wrote serial 1" in first.stderr
    again = relocpy("publish", str(dist), "--to", str(target), env=env, check=True)
    assert "0 uploaded, 2 already there" in again.stderr and "already published" in again.stderr
    relocpy("index", "verify", str(target), "--trusted-key", public, env=env, check=True)
    # Same name, other bytes: refused before anything is written.
    archive = next(dist.glob("*.tar.gz"))
    (target / archive.name).write_bytes(b"other bytes")
    before = (target / "index.json").read_bytes()
    line = one_error_line(relocpy("publish", str(dist), "--to", str(target), env=env))
    assert "other content" in line and (target / "index.json").read_bytes() == before


def test_dry_run_writes_nothing(dist, signing_key, env, tmp_path):
    build(dist, signing_key[0], env)
    result = relocpy("publish", str(dist), "--to", str(tmp_path / "site"), "--dry-run", env=env, check=True)
    assert "would upload" in result.stderr and "would write serial 1" in result.stderr
    assert not (tmp_path / "site").exists()


def test_stale_index_is_refused_or_merged(dist, signing_key, env, tmp_path):
    key, public = signing_key
    target = tmp_path / "site"
    build(dist, key, env)
    relocpy("publish", str(dist), "--to", str(target), env=env, check=True)
    other = second_dist(tmp_path)
    build(other, key, env)  # serial 1, does not know the published entry
    line = one_error_line(relocpy("publish", str(other), "--to", str(target), env=env))
    assert "no key was given to verify it" in line
    line = one_error_line(relocpy("publish", str(other), "--to", str(target), "--trusted-key", public, env=env))
    assert "entries not in ours" in line
    assert len(names((target / "index.json").read_bytes())) == 1
    relocpy("publish", str(other), "--to", str(target), "--sign", str(key), env=env, check=True)
    published = verified((target / "index.json").read_bytes(), public)
    assert len(published.artifacts) == 2 and published.serial == 2
    relocpy("index", "verify", str(target), "--trusted-key", public, env=env, check=True)


def test_a_refresh_built_without_previous_is_merged_not_skipped(dist, signing_key, env, tmp_path):
    """The same entries at a lower serial but a later expiry: a refresh, published as the next serial."""
    key, public = signing_key
    target = tmp_path / "site"
    build(dist, key, env, "--expires", "10d")
    relocpy("publish", str(dist), "--to", str(target), env=env, check=True)
    clean = tmp_path / "clean"
    clean.mkdir()
    for path in dist.glob("cpython-*"):
        (clean / path.name).write_bytes(path.read_bytes())
    build(clean, key, env, "--expires", "20d")  # serial 1 again: built without --previous
    skipped = relocpy("publish", str(clean), "--to", str(target), "--trusted-key", public, env=env)
    assert "is not older than ours" in one_error_line(skipped)
    relocpy("publish", str(clean), "--to", str(target), "--sign", str(key), env=env, check=True)
    published = verified((target / "index.json").read_bytes(), public)
    assert published.serial == 2 and published.expires == payload((clean / "index.json").read_bytes()).expires


# --- S3 (moto on loopback) ---------------------------------------------------------------


@pytest.fixture
def bucket(s3_endpoint, env):
    env.update(AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="us-east-1")
    name = f"py-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test")
    client.create_bucket(Bucket=name)
    return client, name


def s3_publish(dist, bucket, endpoint, env, *extra):
    return relocpy("publish", str(dist), "--to", f"s3://{bucket}/releases", "--endpoint-url", endpoint, *extra, env=env)


def test_s3_publish_order_idempotence_and_refusal(dist, signing_key, env, bucket, s3_endpoint):
    client, name = bucket
    build(dist, signing_key[0], env)
    first = s3_publish(dist, name, s3_endpoint, env)
    assert first.returncode == 0, first.stderr
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=name)["Contents"])
    archive = artifact_key().filename
    assert keys == sorted(f"releases/{k}" for k in [archive, archive + ".json", "index.json"])
    head = client.head_object(Bucket=name, Key=f"releases/{archive}")
    assert head["Metadata"]["sha256"] == json.loads((dist / f"{archive}.json").read_text())["sha256"]
    again = s3_publish(dist, name, s3_endpoint, env)
    assert "0 uploaded" in again.stderr and "already published" in again.stderr
    client.put_object(Bucket=name, Key=f"releases/{archive}.json", Body=b"{}")
    assert "other content" in one_error_line(s3_publish(dist, name, s3_endpoint, env))


def test_s3_rerun_after_crash_completes(dist, signing_key, env, bucket, s3_endpoint):
    client, name = bucket
    build(dist, signing_key[0], env)
    archive = artifact_key().filename
    # A crash after the first upload: only the archive made it.
    client.upload_file(str(dist / archive), name, f"releases/{archive}")
    result = s3_publish(dist, name, s3_endpoint, env)
    assert result.returncode == 0, result.stderr
    assert "1 uploaded, 1 already there" in result.stderr
    got = client.get_object(Bucket=name, Key="releases/index.json")["Body"].read()
    assert got == (dist / "index.json").read_bytes()


def test_s3_racing_publishers_keep_both_entries(dist, signing_key, env, bucket, s3_endpoint, tmp_path):
    """Both built serial 1 from the same (empty) state; the second merges instead of dropping."""
    client, name = bucket
    key, public = signing_key
    other = second_dist(tmp_path)
    build(dist, key, env)
    build(other, key, env)
    assert s3_publish(dist, name, s3_endpoint, env, "--sign", str(key)).returncode == 0
    assert "no key was given to verify it" in one_error_line(s3_publish(other, name, s3_endpoint, env))
    assert "entries not in ours" in one_error_line(s3_publish(other, name, s3_endpoint, env, "--trusted-key",
                                                              public))
    assert len(client.list_objects_v2(Bucket=name)["Contents"]) == 3  # a refused publish uploads nothing
    merged = s3_publish(other, name, s3_endpoint, env, "--sign", str(key))
    assert merged.returncode == 0, merged.stderr
    index = client.get_object(Bucket=name, Key="releases/index.json")["Body"].read()
    assert len(verified(index, public).artifacts) == 2 and verified(index, public).serial == 2


@pytest.fixture
def aws_env(monkeypatch):
    for name, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)


def test_s3_conditional_write_detects_a_concurrent_change(bucket, s3_endpoint, aws_env):
    """The write is conditional on the ETag read: a change in between is a Conflict, not an overwrite."""
    client, name = bucket
    target = S3Target(f"s3://{name}/releases", s3_endpoint)
    assert target.read_index() == (None, None)
    target.write_index(b"first", None)
    with pytest.raises(Conflict):
        target.write_index(b"second", None)  # someone created it meanwhile
    data, etag = target.read_index()
    client.put_object(Bucket=name, Key="releases/index.json", Body=b"changed by another publisher")
    with pytest.raises(Conflict):
        target.write_index(b"third", etag)
    assert target.read_index()[0] == b"changed by another publisher"


def test_bad_s3_url_and_unreachable_endpoint(dist, signing_key, env):
    build(dist, signing_key[0], env)
    env = {**env, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_MAX_ATTEMPTS": "1"}
    assert "s3://BUCKET" in one_error_line(relocpy("publish", str(dist), "--to", "s3://", env=env))
    line = one_error_line(relocpy("publish", str(dist), "--to", "s3://b/p", "--endpoint-url", "http://127.0.0.1:9", env=env))
    assert "failed" in line


class InterleavedTarget(S3Target):
    """A real S3 target whose first index read is followed by another publisher's write."""

    def __init__(self, *args, other=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.other = other

    def read_index(self):
        seen = super().read_index()
        if self.other:
            other, self.other = self.other, None
            other()
        return seen


def index_publisher(dist, key_files):
    """publish_index for a dist, as `relocpy publish` calls it."""
    signing = keys.PublisherKeys.load(key_files)
    local = (dist / "index.json").read_bytes()
    ours = local_index(local, signing, "index.json")
    return lambda target, report: publish_index(local, ours, target, signing, False, report)


def test_s3_lost_race_rereads_and_merges(dist, signing_key, env, bucket, s3_endpoint, tmp_path, aws_env):
    client, name = bucket
    key, public = signing_key
    other = second_dist(tmp_path)
    build(dist, key, env)
    build(other, key, env)
    url = f"s3://{name}/releases"
    rival = lambda: index_publisher(other, [key])(S3Target(url, s3_endpoint), Report())
    report = Report()
    index_publisher(dist, [key])(InterleavedTarget(url, s3_endpoint, other=rival), report)
    index = client.get_object(Bucket=name, Key="releases/index.json")["Body"].read()
    assert len(verified(index, public).artifacts) == 2 and report.index == "wrote serial 2"


def test_s3_lost_race_without_keys_overwrites_nothing(dist, signing_key, env, bucket, s3_endpoint, tmp_path, aws_env):
    client, name = bucket
    key, _ = signing_key
    other = second_dist(tmp_path)
    build(dist, key, env)
    build(other, key, env)
    url = f"s3://{name}/releases"
    rival = lambda: index_publisher(other, [])(S3Target(url, s3_endpoint), Report())
    with pytest.raises(PublishError, match="no key was given to verify it"):
        index_publisher(dist, [])(InterleavedTarget(url, s3_endpoint, other=rival), Report())
    index = client.get_object(Bucket=name, Key="releases/index.json")["Body"].read()
    assert index == (other / "index.json").read_bytes()


# --- what the release job runs, twice ---------------------------------------------------


def release(dist, key, to, env, *publish_extra):
    """The release job's two commands, as ci.release_steps gives them."""
    relocpy("index", "build", str(dist), "--base-url", BASE, "--sign", str(key), "--previous", to, env=env, check=True)
    relocpy("publish", str(dist), "--to", to, "--sign", str(key), *publish_extra, env=env, check=True)


def test_a_second_release_continues_the_serial_and_keeps_the_first(dist, signing_key, env, tmp_path):
    key, public = signing_key
    site = str(tmp_path / "site")
    release(dist, key, site, env)
    release(second_dist(tmp_path), key, site, env)
    assert payload((tmp_path / "site" / "index.json").read_bytes()).serial == 2
    assert names((tmp_path / "site" / "index.json").read_bytes()) == sorted(
        [*names((dist / "index.json").read_bytes()), artifact_key(version="3.99.2").filename])
    relocpy("index", "verify", site, "--trusted-key", public, env=env, check=True)


def test_a_second_release_to_s3_continues_the_serial(dist, signing_key, env, bucket, s3_endpoint, tmp_path):
    client, name = bucket
    to = f"s3://{name}/python"
    env = {**env, "AWS_ENDPOINT_URL_S3": s3_endpoint}  # as the release job's role step would set up
    release(dist, signing_key[0], to, env)
    release(second_dist(tmp_path), signing_key[0], to, env)
    body = client.get_object(Bucket=name, Key="python/index.json")["Body"].read()
    assert payload(body).serial == 2 and len(names(body)) == 2


@pytest.mark.parametrize("typo", ["s3:/bucket/x", "s3:bucket", "https:/host/x", "file:site"])
def test_a_url_typo_is_refused_not_written_as_a_directory(dist, signing_key, env, tmp_path, typo):
    build(dist, signing_key[0], env)
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    exe = Path(sys.executable).parent / "relocpy"
    result = subprocess.run([str(exe), "publish", str(dist), "--to", typo], capture_output=True, text=True,
                            env=env, cwd=workdir)
    assert "unsupported target" in one_error_line(result)
    assert list(workdir.iterdir()) == []
