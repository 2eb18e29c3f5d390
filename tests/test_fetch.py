"""Fetching: cache, directory mirrors, and a real HTTP server on loopback that
truncates, corrupts and stalls."""

from __future__ import annotations

import hashlib
import ssl

import pytest

from relocpy.errors import HashMismatchError, SourceError
from relocpy.fetch import cache_path, fetch_all
from relocpy.models import SourceFile
from relocpy.settings import FetchSettings

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


def pinned(name: str, data: bytes, urls=()) -> SourceFile:
    return SourceFile(file=name, sha256=hashlib.sha256(data).hexdigest(), urls=list(urls))


def settings(tmp_path, **kw) -> FetchSettings:
    return FetchSettings(cache_dir=tmp_path / "cache", progress=False, **kw)


def cache_files(tmp_path) -> list:
    root = tmp_path / "cache"
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_directory_mirror_fills_cache_then_cache_is_used(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "a.tar.gz").write_bytes(PAYLOAD)
    source = pinned("a.tar.gz", PAYLOAD)
    [got] = fetch_all([("a", [source])], settings(tmp_path, mirrors=[str(mirror)]))
    assert got.location == str(mirror / "a.tar.gz")
    assert got.path == cache_path(settings(tmp_path), source)
    assert got.path.read_bytes() == PAYLOAD
    (mirror / "a.tar.gz").unlink()
    [again] = fetch_all([("a", [source])], settings(tmp_path, mirrors=[str(mirror)]))
    assert again.location == "cache"


def test_corrupted_mirror_file_is_refused_and_nothing_cached(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "a.tar.gz").write_bytes(PAYLOAD[:-1] + b"x")
    source = pinned("a.tar.gz", PAYLOAD)
    with pytest.raises(HashMismatchError) as err:
        fetch_all([("a", [source])], settings(tmp_path, mirrors=[str(mirror)], offline=True))
    message = str(err.value)
    assert "a.tar.gz" in message and str(mirror) in message
    assert source.sha256 in message and hashlib.sha256(PAYLOAD[:-1] + b"x").hexdigest() in message
    assert "\n" not in message
    assert cache_files(tmp_path) == []


def test_alternate_source_is_used_when_the_first_is_absent(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "repack.orig.tar.gz").write_bytes(PAYLOAD)
    upstream = SourceFile(file="up.tar.gz", sha256="0" * 64)
    repack = pinned("repack.orig.tar.gz", PAYLOAD).model_copy(update={"origin": "repack"})
    [got] = fetch_all([("a", [upstream, repack])], settings(tmp_path, mirrors=[str(mirror)], offline=True))
    assert got.source == repack


def test_offline_without_a_mirror_says_so(tmp_path):
    source = pinned("a.tar.gz", PAYLOAD, urls=["http://127.0.0.1:9/a.tar.gz"])
    with pytest.raises(SourceError, match="offline"):
        fetch_all([("a", [source])], settings(tmp_path, offline=True))


def test_http_mirror_download(tmp_path, file_server):
    (file_server.directory / "a.tar.gz").write_bytes(PAYLOAD)
    [got] = fetch_all([("a", [pinned("a.tar.gz", PAYLOAD)])], settings(tmp_path, mirrors=[file_server.url]))
    assert got.path.read_bytes() == PAYLOAD
    assert got.location == f"{file_server.url}/a.tar.gz"


def test_upstream_url_used_after_mirrors(tmp_path, file_server):
    (file_server.directory / "a.tar.gz").write_bytes(PAYLOAD)
    source = pinned("a.tar.gz", PAYLOAD, urls=[f"{file_server.url}/a.tar.gz"])
    [got] = fetch_all([("a", [source])], settings(tmp_path, mirrors=[str(tmp_path / "empty")]))
    assert got.location == source.urls[0]


def test_truncated_download_resumes_with_a_range_request(tmp_path, file_server):
    (file_server.directory / "a.tar.gz").write_bytes(PAYLOAD)
    file_server.faults["a.tar.gz"] = "truncate"
    [got] = fetch_all([("a", [pinned("a.tar.gz", PAYLOAD)])], settings(tmp_path, mirrors=[file_server.url]))
    assert got.path.read_bytes() == PAYLOAD
    ranges = [r for name, r in file_server.requests if name == "a.tar.gz"]
    assert ranges[0] is None and ranges[1] == f"bytes={len(PAYLOAD) // 2}-"


def test_corrupted_download_is_refused_and_nothing_cached(tmp_path, file_server):
    (file_server.directory / "a.tar.gz").write_bytes(PAYLOAD)
    file_server.faults["a.tar.gz"] = "corrupt"
    with pytest.raises(HashMismatchError, match="expected"):
        fetch_all([("a", [pinned("a.tar.gz", PAYLOAD)])], settings(tmp_path, mirrors=[file_server.url]))
    assert cache_files(tmp_path) == []


def test_stalled_download_times_out_cleanly(tmp_path, file_server):
    (file_server.directory / "a.tar.gz").write_bytes(PAYLOAD)
    file_server.faults["a.tar.gz"] = "stall"
    with pytest.raises(SourceError, match="stalled"):
        fetch_all(
            [("a", [pinned("a.tar.gz", PAYLOAD)])],
            settings(tmp_path, mirrors=[file_server.url], timeout=0.5, retries=2),
        )
    assert cache_files(tmp_path) == []


def test_missing_file_on_server_falls_through_to_next_mirror(tmp_path, file_server):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "a.tar.gz").write_bytes(PAYLOAD)
    [got] = fetch_all(
        [("a", [pinned("a.tar.gz", PAYLOAD)])], settings(tmp_path, mirrors=[file_server.url, str(mirror)])
    )
    assert got.location == str(mirror / "a.tar.gz")


@pytest.mark.e2e
@pytest.mark.parametrize("python", ["3.13.15", "3.11.2"])
def test_every_source_of_a_plan_from_the_mirror_into_an_empty_cache(tmp_path, sources_mirror, python):
    from relocpy.plan import resolve_plan
    from relocpy.recipes import load_recipes

    plan = resolve_plan(load_recipes(), python, "x86_64-unknown-linux-gnu", "noopt")
    fetched = fetch_all(plan.all_sources(), settings(tmp_path, mirrors=[str(sources_mirror)], offline=True))
    assert {f.component for f in fetched} == {name for name, _ in plan.all_sources()}
    for item in fetched:
        assert hashlib.sha256(item.path.read_bytes()).hexdigest() == item.source.sha256


def test_https_is_verified_against_a_ca_bundle(monkeypatch):
    from relocpy import http

    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    context = http.tls_context.__wrapped__()  # uncached: this environment's choice
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.cert_store_stats()["x509_ca"] > 10
