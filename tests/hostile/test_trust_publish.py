"""The publisher under attack, crashes and races: real `python -m relocpy`
against a directory and against S3 (moto's server, real boto3).

Every case ends with the channel consistent: its index verifies, and every
file it names is at the target with the bytes it names.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import boto3
import pytest

from support import LoopbackServer, one_error_line
from trust_support import CLI_TIMEOUT, Signer, entry, index, run, sealed, small_dist, unverified, verified

BASE = "http://downloads.example.invalid/python"
FORGED_SERIAL = 10**18


# --- targets -------------------------------------------------------------------------


class DirSite:
    kind = "dir"

    def __init__(self, root: Path):
        self.root = root
        self.to = str(root)

    def read(self, name: str) -> bytes | None:
        path = self.root / name
        return path.read_bytes() if path.is_file() else None

    def put(self, name: str, data: bytes) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / name).write_bytes(data)

    def names(self) -> set[str]:
        return {p.name for p in self.root.iterdir() if not p.name.startswith(".")} if self.root.is_dir() else set()


class S3Site:
    kind = "s3"

    def __init__(self, endpoint: str):
        self.bucket = f"hostile-{uuid.uuid4().hex[:12]}"
        self.client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                                   aws_access_key_id="test", aws_secret_access_key="test")
        self.client.create_bucket(Bucket=self.bucket)
        self.to = f"s3://{self.bucket}/python"

    def read(self, name: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=f"python/{name}")["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None

    def put(self, name: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=f"python/{name}", Body=data)

    def names(self) -> set[str]:
        listed = self.client.list_objects_v2(Bucket=self.bucket).get("Contents", [])
        return {o["Key"].removeprefix("python/") for o in listed}


@pytest.fixture(params=["dir", "s3"])
def site(request, tmp_path, env):
    if request.param == "dir":
        return DirSite(tmp_path / "site")
    endpoint = request.getfixturevalue("s3_endpoint")
    env.update(AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="us-east-1",
               AWS_ENDPOINT_URL_S3=endpoint)  # what the release job's role step sets up
    return S3Site(endpoint)


@pytest.fixture(scope="module")
def signers(tmp_path_factory):
    """(the release key, a stranger's key)."""
    root = tmp_path_factory.mktemp("keys")
    return Signer(root / "release.key"), Signer(root / "stranger.key")


def build(dist: Path, signer: Signer, env, *extra: str) -> None:
    result = run("index", "build", str(dist), "--base-url", BASE, "--sign", str(signer.path), *extra, env=env)
    assert result.returncode == 0, result.stderr


def publish(dist: Path, site, env, *extra: str, fault: str | None = None) -> subprocess.CompletedProcess:
    faulty = {**env, "RELOCPY_FAULT": fault} if fault else env
    return run("publish", str(dist), "--to", site.to, *extra, env=faulty)


def release(dist: Path, site, signer: Signer, env) -> None:
    """The release job's two commands."""
    build(dist, signer, env, "--previous", site.to)
    result = publish(dist, site, env, "--sign", str(signer.path))
    assert result.returncode == 0, result.stderr


def consistent(site, signer: Signer):
    """The published index, verified, after checking that every file it names has the bytes it names."""
    published = verified(site.read("index.json"), signer)
    for item in published.artifacts:
        for name, sha in ((item.name, item.sha256), (item.name + ".json", item.metadata_sha256)):
            data = site.read(name)
            assert data is not None and hashlib.sha256(data).hexdigest() == sha, f"{name} does not match the index"
    return published


def names_of(published) -> set[str]:
    return {item.name for item in published.artifacts}


def dist_names(*dists: Path) -> set[str]:
    return {names for dist in dists for names in names_of(unverified((dist / "index.json").read_bytes()))}


# --- crashes ---------------------------------------------------------------------------


@pytest.mark.parametrize("point", ["file-staged", "file-written", "index-staged", "index-written"])
@pytest.mark.parametrize("scenario", ["first-release", "merging-release"])
def test_publish_killed_at_each_write_point_leaves_a_verifying_channel_and_a_rerun_finishes(
    point, scenario, site, signers, env, tmp_path,
):
    signer = signers[0]
    earlier = []
    if scenario == "merging-release":
        earlier = [small_dist(tmp_path, "3.99.1")]
        release(earlier[0], site, signer, env)
    dist = small_dist(tmp_path, "3.99.2")
    build(dist, signer, env, "--previous", site.to)
    before = site.read("index.json")
    dist_index = (dist / "index.json").read_bytes()

    killed = publish(dist, site, env, "--sign", str(signer.path), fault=f"publish:{point}")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    if point == "index-written":  # the index landed whole, then the process died
        assert names_of(consistent(site, signer)) == dist_names(dist, *earlier)
    else:  # the old index, untouched (none at all before the first release)
        assert site.read("index.json") == before
        if before is not None:
            assert names_of(consistent(site, signer)) == dist_names(*earlier)
    assert (dist / "index.json").read_bytes() == dist_index

    rerun = publish(dist, site, env, "--sign", str(signer.path))
    assert rerun.returncode == 0, rerun.stderr
    assert ("already published" in rerun.stderr) == (point == "index-written")
    final = consistent(site, signer)
    assert names_of(final) == dist_names(dist, *earlier) and final.serial == 1 + len(earlier)


# --- races -----------------------------------------------------------------------------


def start_stopped_at(point: str, dist: Path, site, signer: Signer, env) -> subprocess.Popen:
    """A real publish, stopped (SIGSTOP) by the fault hook at POINT."""
    process = subprocess.Popen(
        [sys.executable, "-m", "relocpy", "publish", str(dist), "--to", site.to, "--sign", str(signer.path)],
        env={**env, "RELOCPY_FAULT": f"publish:{point}:stop"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    deadline = time.monotonic() + CLI_TIMEOUT
    while _state(process.pid) != "T":
        if process.poll() is not None:
            raise AssertionError(f"publish ended before {point}: {process.communicate()[1]}")
        assert time.monotonic() < deadline, f"publish never reached {point}"
        time.sleep(0.05)
    return process


def _state(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0]


def resume(process: subprocess.Popen) -> tuple[int, str]:
    os.kill(process.pid, signal.SIGCONT)
    _, err = process.communicate(timeout=CLI_TIMEOUT)
    return process.returncode, err


@pytest.mark.parametrize("order", ["first-waits", "second-waits"])
def test_concurrent_publishers_both_orders_keep_both_releases(order, site, signers, env, tmp_path):
    """Both built serial 1 from the same (empty) channel; the one that writes second merges, re-signs, and
    neither release is lost."""
    signer = signers[0]
    a, b = small_dist(tmp_path, "3.99.1"), small_dist(tmp_path, "3.99.2")
    for dist in (a, b):
        build(dist, signer, env, "--previous", site.to)
    waiting, other = (a, b) if order == "first-waits" else (b, a)
    stopped = start_stopped_at("index-read", waiting, site, signer, env)
    done = publish(other, site, env, "--sign", str(signer.path))
    assert done.returncode == 0, done.stderr
    code, err = resume(stopped)
    assert code == 0 and "wrote serial 2" in err, err
    final = consistent(site, signer)
    assert names_of(final) == dist_names(a, b) and final.serial == 2


@pytest.mark.parametrize("order", ["first-waits", "second-waits"])
def test_s3_publishers_racing_at_the_index_put_never_pair_an_index_with_another_signature(
    order, s3_endpoint, signers, env, tmp_path,
):
    """Defect 3: the signature PUT was unconditional. One publisher stops right before its conditional PUT
    of index.json (signatures inside), the other publishes; the first's PUT is refused, it re-reads and
    merges."""
    env.update(AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_ENDPOINT_URL_S3=s3_endpoint)
    site, signer = S3Site(s3_endpoint), signers[0]
    a, b = small_dist(tmp_path, "3.99.1"), small_dist(tmp_path, "3.99.2")
    for dist in (a, b):
        build(dist, signer, env, "--previous", site.to)
    waiting, other = (a, b) if order == "first-waits" else (b, a)
    stopped = start_stopped_at("index-staged", waiting, site, signer, env)
    assert publish(other, site, env, "--sign", str(signer.path)).returncode == 0
    assert verified(site.read("index.json"), signer).serial == 1
    code, err = resume(stopped)
    assert code == 0 and "wrote serial 2" in err, err
    final = consistent(site, signer)
    assert names_of(final) == dist_names(a, b) and final.serial == 2 and site.read("index.json.sig") is None


@pytest.mark.parametrize("order", ["first-waits", "second-waits"])
def test_two_publishers_of_one_name_with_other_bytes_leave_the_archive_the_index_names(
    order, site, signers, env, tmp_path,
):
    """Defect 12: the same archive name, other bytes; whoever comes second is refused, and the published
    archive is always the one the published index names."""
    signer = signers[0]
    a = small_dist(tmp_path, "3.99.1", content=b"bytes of A")
    b = small_dist(tmp_path, "3.99.1", content=b"bytes of B")
    for dist in (a, b):
        build(dist, signer, env, "--previous", site.to)
    waiting, other = (a, b) if order == "first-waits" else (b, a)
    stopped = start_stopped_at("file-staged", waiting, site, signer, env)
    done = publish(other, site, env, "--sign", str(signer.path))
    assert done.returncode == 0, done.stderr
    code, err = resume(stopped)
    assert code == 1 and "already exists at" in err and "with other content" in err, err
    assert err.strip().splitlines()[-1].startswith("relocpy: error: ") and "Traceback" not in err
    final = consistent(site, signer)
    assert final.artifacts == unverified((other / "index.json").read_bytes()).artifacts


# --- unverified published indexes ---------------------------------------------------------


def forge(kind: str, signers, artifacts=None) -> bytes:
    """An index claiming serial 10^18 (and, for publish, an entry nobody signed)."""
    signer, stranger = signers
    payload = index(serial=FORGED_SERIAL, artifacts=artifacts, lifetime=timedelta(days=30)).payload()
    if kind == "stranger-key":
        return sealed(payload, stranger)
    if kind == "unsigned":
        return sealed(payload)
    genuine = index(serial=1, artifacts=artifacts).payload()  # a genuine index, its serial then raised
    signed = sealed(genuine, signer)
    return signed.replace(b'\\"serial\\":1,', f'\\"serial\\":{FORGED_SERIAL},'.encode(), 1)


FORGERIES = {"stranger-key": "not signed by a trusted key", "unsigned": "not signed by a trusted key (signed by: none)",
             "tampered": "bad signature"}


@pytest.mark.parametrize("location", ["publish-dir", "index-path", "http-url", "s3"])
@pytest.mark.parametrize("kind", FORGERIES.keys())
def test_previous_refuses_an_unverified_index_and_its_serial(kind, location, signers, env, tmp_path, request):
    """Defect 1: a forged serial of 10^18 became the new base."""
    forged = forge(kind, signers)
    assert b"1000000000000000000" in forged
    if location == "s3":
        endpoint = request.getfixturevalue("s3_endpoint")
        env.update(AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_ENDPOINT_URL_S3=endpoint)
        target = S3Site(endpoint)
    else:
        target = DirSite(tmp_path / "site")
    target.put("index.json", forged)
    dist = small_dist(tmp_path)

    def attempt(previous: str):
        return run("index", "build", str(dist), "--base-url", BASE, "--sign", str(signers[0].path),
                   "--previous", previous, env=env)

    if location == "http-url":
        with LoopbackServer(target.root) as server:
            where = server.url + "/index.json"
            result = attempt(where)
    else:
        where = f"{target.to}/index.json"
        result = attempt(where if location == "index-path" else target.to)
    line = one_error_line(result)
    assert f"refusing to continue from {where}: " in line and FORGERIES[kind] in line
    assert result.returncode == 1
    assert not (dist / "index.json").exists()


@pytest.mark.parametrize("kind", FORGERIES.keys())
def test_publish_sign_refuses_to_merge_and_sign_an_unverified_index(kind, site, signers, env, tmp_path):
    """Defect 1: anyone with write access to the bucket added an entry; the next publish signed it."""
    smuggled = entry(version="3.99.9")
    forged = forge(kind, signers, artifacts=[smuggled])
    site.put("index.json", forged)
    dist = small_dist(tmp_path)
    build(dist, signers[0], env)
    result = publish(dist, site, env, "--sign", str(signers[0].path))
    line = one_error_line(result)
    assert f"refusing to continue from {site.to}/index.json: " in line and FORGERIES[kind] in line
    assert result.returncode == 1
    assert site.read("index.json") == forged and site.names() == {"index.json"}  # nothing uploaded, nothing signed


def test_published_index_of_another_channel_is_neither_continued_nor_merged(signers, env, tmp_path):
    site = DirSite(tmp_path / "site")
    nightly = sealed(index(serial=50, channel="nightly").payload(), signers[0])
    site.put("index.json", nightly)
    dist = small_dist(tmp_path)
    line = one_error_line(run("index", "build", str(dist), "--base-url", BASE, "--sign", str(signers[0].path),
                              "--previous", site.to, env=env))
    assert "is the index of channel 'nightly', not 'stable'" in line
    build(dist, signers[0], env)
    line = one_error_line(publish(dist, site, env, "--sign", str(signers[0].path)))
    assert "is the index of channel 'nightly', not 'stable'" in line
    assert site.read("index.json") == nightly


def test_publish_without_a_key_does_not_judge_an_index_it_cannot_verify(signers, env, tmp_path):
    site = DirSite(tmp_path / "site")
    release(small_dist(tmp_path, "3.99.1"), site, signers[0], env)
    before = site.read("index.json")
    dist = small_dist(tmp_path, "3.99.2")
    build(dist, signers[0], env, "--previous", site.to)
    line = one_error_line(publish(dist, site, env))
    assert "is not our index and no key was given to verify it" in line
    assert site.read("index.json") == before and "cpython-3.99.2" not in " ".join(site.names())


def test_publish_sign_refuses_a_swapped_dist_index(signers, env, tmp_path):
    """A dist/index.json replaced (a CI cache, a shared runner) is not published under the release key."""
    site = DirSite(tmp_path / "site")
    dist = small_dist(tmp_path)
    build(dist, signers[1], env)  # signed by the stranger
    result = publish(dist, site, env, "--sign", str(signers[0].path))
    line = one_error_line(result)
    assert f"{dist / 'index.json'}: index is not signed by a trusted key" in line and "refusing to publish it" in line
    assert result.returncode == 1 and site.names() == set()


def test_publish_refuses_an_expired_dist_index(signers, env, tmp_path):
    site = DirSite(tmp_path / "site")
    dist = small_dist(tmp_path)
    build(dist, signers[0], env, "--expires", "0m")
    line = one_error_line(publish(dist, site, env, "--sign", str(signers[0].path)))
    assert "expired at" in line and "rebuild it" in line and site.names() == set()


def test_publish_refuses_an_entry_neither_in_dist_nor_at_the_target(signers, env, tmp_path):
    site = DirSite(tmp_path / "site")
    dist = small_dist(tmp_path)
    build(dist, signers[0], env)
    archive = next(dist.glob("*.tar.gz"))
    archive.unlink()
    line = one_error_line(publish(dist, site, env, "--sign", str(signers[0].path)))
    assert f"{archive.name} is in index.json but neither in {dist} nor at {site.to}" in line
    assert site.names() == set()


# --- re-runs ----------------------------------------------------------------------------------


def test_ci_retry_after_a_merging_publish_succeeds(site, signers, env, tmp_path):
    """Defect 13: re-running the publish step after it merged stopped with "missing from DIST"."""
    signer = signers[0]
    first = small_dist(tmp_path, "3.99.1")
    release(first, site, signer, env)
    second = small_dist(tmp_path, "3.99.2")
    release(second, site, signer, env)
    assert verified(site.read("index.json"), signer).serial == 2
    retry = publish(second, site, env, "--sign", str(signer.path))  # the step, re-run
    assert retry.returncode == 0 and "already published" in retry.stderr, retry.stderr
    release(second, site, signer, env)  # the whole job, re-run: a new serial, nothing lost
    final = consistent(site, signer)
    assert final.serial == 3 and names_of(final) == dist_names(first, second)
