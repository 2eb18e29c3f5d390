"""Servers and indexes that lie about an artifact's bytes, servers that drip
them, and transfer settings a user can get wrong: each ends in one error
line, with nothing installed and nothing half-written in the cache."""

import hashlib
import subprocess
import sys
import time
from urllib.parse import quote

import pytest

from relocpy.errors import InstallError, SourceError
from relocpy.fetch import fetch_all
from relocpy.index import IndexEntry
from relocpy.install import download
from relocpy.models import SourceFile
from relocpy.settings import ClientSettings, FetchSettings
from support import (END, SHELL_PYTHON, LoopbackServer, artifact_key, channel, gz, header, leftovers, one_error_line,
                     regular, relocpy, relocpy_measured)

ARCHIVE = gz(regular("python/bin/python3", SHELL_PYTHON) + regular("python/lib/data", b"d" * 50_000) + END)
NAME = artifact_key(version="3.99.1").filename
QUOTED = quote(NAME, safe="")  # as the index spells it in its URL


def url(server) -> str:
    return f"{server.url}/{QUOTED}"


def cache_files(env) -> list[str]:
    """Every file under the client's cache dir, .part files included."""
    from pathlib import Path

    root = Path(env["XDG_CACHE_HOME"])
    return sorted(p.name for p in root.rglob("*") if p.is_file()) if root.exists() else []


def install(env, *extra):
    started = time.monotonic()
    result = relocpy("install", "3.99", *extra, env=env)
    return result, time.monotonic() - started


# --- sizes ----------------------------------------------------------------------------------


def test_a_served_file_larger_than_its_signed_size_is_refused_before_a_byte_is_written(tmp_path, signing_key, env):
    with channel(tmp_path, ARCHIVE, signing_key, env) as (server, client, versions):
        (tmp_path / "dist" / NAME).write_bytes(ARCHIVE + b"\0" * 3_000_000)
        result, _ = install(client)
    assert one_error_line(result) == (
        f"relocpy: error: {NAME}: {QUOTED} from {url(server)}: the server offers {len(ARCHIVE) + 3_000_000} "
        f"bytes, more than the {len(ARCHIVE)} expected")
    assert leftovers(versions) == [] and cache_files(client) == []


def test_a_body_with_no_length_is_cut_at_the_signed_size(tmp_path, signing_key, env):
    with channel(tmp_path, ARCHIVE, signing_key, env) as (server, client, versions):
        (tmp_path / "dist" / NAME).write_bytes(ARCHIVE + b"\0" * 3_000_000)
        server.faults[NAME] = "no-length"
        result, _ = install(client)
    assert one_error_line(result) == (
        f"relocpy: error: {NAME}: {QUOTED} from {url(server)}: more than the {len(ARCHIVE)} bytes expected")
    assert leftovers(versions) == [] and cache_files(client) == []


def entry(url: str, data: bytes = ARCHIVE, **changes) -> IndexEntry:
    key = artifact_key(version="3.99.1")
    fields = {"name": key.filename, "key": key, "url": url, "sha256": hashlib.sha256(data).hexdigest(),
              "size": len(data), "abi_tag": "cp399", "build_options": "noopt", "metadata_url": url + ".json",
              "metadata_sha256": "0" * 64}
    return IndexEntry(**{**fields, **changes})


def client_settings(tmp_path, **fetch) -> ClientSettings:
    return ClientSettings(index_url=None, trusted_keys=[], channel="stable", install_dir=tmp_path / "versions",
                          state_file=tmp_path / "state.json",
                          fetch=FetchSettings(cache_dir=tmp_path / "cache", progress=False, **fetch))


@pytest.fixture
def served_archive(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / NAME).write_bytes(ARCHIVE)
    with LoopbackServer(site) as server:
        yield server


def test_an_index_size_above_the_real_one_is_refused(tmp_path, served_archive):
    with pytest.raises(InstallError) as failure:
        download(entry(f"{served_archive.url}/{NAME}", size=len(ARCHIVE) + 10), served_archive.url + "/index.json",
                 client_settings(tmp_path))
    assert str(failure.value) == f"{NAME}: {len(ARCHIVE)} bytes, but the index says {len(ARCHIVE) + 10}; refusing the entry"


def test_a_negative_size_is_refused_before_any_request(tmp_path, served_archive):
    with pytest.raises(InstallError) as failure:
        download(entry(f"{served_archive.url}/{NAME}", size=-1), served_archive.url + "/index.json",
                 client_settings(tmp_path))
    assert str(failure.value) == f"{NAME}: the index gives it a negative size (-1); refusing the entry"
    assert served_archive.handler.hits == {}


@pytest.mark.parametrize("url", ["/etc/passwd", "file:///etc/passwd", "../../../../etc/passwd"])
def test_a_remote_index_cannot_send_the_client_to_its_own_disk(tmp_path, served_archive, url):
    source = served_archive.url + "/index.json"
    if url.startswith("../"):  # relative: resolved against the index's URL, so it stays on the server
        with pytest.raises(SourceError, match="HTTP 404"):
            download(entry(url), source, client_settings(tmp_path, retries=0))
        return
    with pytest.raises(InstallError) as failure:
        download(entry(url), source, client_settings(tmp_path))
    assert str(failure.value) == (f"{NAME}: the index at {source} gives its URL as {url!r}, which is not http(s); "
                                  "refusing to read the local disk for a remote index")


def test_an_index_built_with_local_paths_and_served_over_http(tmp_path, signing_key, env):
    """`index build --base-url <a directory>` writes absolute paths: over http they are refused."""
    with channel(tmp_path, ARCHIVE, signing_key, env, base_url=str(tmp_path / "dist")) as (_, client, versions):
        result, _ = install(client)
    assert "which is not http(s); refusing to read the local disk for a remote index" in one_error_line(result)
    assert leftovers(versions) == [] and cache_files(client) == []


# --- time -------------------------------------------------------------------------------------


def test_a_dripping_server_meets_the_deadline(tmp_path, signing_key, env):
    with channel(tmp_path, ARCHIVE, signing_key, env) as (server, client, versions):
        server.faults[NAME] = "drip"
        result, seconds = install({**client, "RELOCPY_DEADLINE": "1", "RELOCPY_TIMEOUT": "5"})
    line = one_error_line(result)
    assert line.startswith(f"relocpy: error: {NAME}: cannot get {NAME}: {url(server)}: "
                           "not done within the 1 s deadline (RELOCPY_DEADLINE; ")
    assert line.endswith(" bytes arrived)") and seconds < 8
    assert leftovers(versions) == [] and cache_files(client) == []


@pytest.mark.parametrize("fault", ["drip", "drip-headers"])
def test_a_dripping_index_meets_the_deadline_too(tmp_path, signing_key, env, fault):
    """The index is read under the same deadline as the archives: a server
    dripping index.json (or its headers) cannot hold `install` forever."""
    with channel(tmp_path, ARCHIVE, signing_key, env) as (server, client, versions):
        server.faults["index.json"] = fault
        result, seconds = install({**client, "RELOCPY_DEADLINE": "1", "RELOCPY_TIMEOUT": "5"})
    assert one_error_line(result) == (f"relocpy: error: cannot fetch {server.url}/index.json: "
                                      "not done within the 1 s deadline (RELOCPY_DEADLINE)")
    assert seconds < 8
    assert leftovers(versions) == [] and not (tmp_path / "versions").exists()


@pytest.mark.parametrize("fault", ["drip", "drip-headers"])
def test_the_deadline_holds_for_fetch_too(tmp_path, served_archive, fault):
    """Headers dripped byte by byte hold no read open past the deadline either."""
    served_archive.faults[NAME] = fault
    source = SourceFile(file=NAME, sha256=hashlib.sha256(ARCHIVE).hexdigest(), urls=[f"{served_archive.url}/{NAME}"])
    started = time.monotonic()
    with pytest.raises(SourceError, match=r"not done within the 0.5 s deadline"):
        fetch_all([("a", [source])], FetchSettings(cache_dir=tmp_path / "cache", progress=False, deadline=0.5))
    assert time.monotonic() - started < 3
    assert not any((tmp_path / "cache").rglob("*.part"))


# --- retries ----------------------------------------------------------------------------------


@pytest.mark.parametrize("retries, fault, succeeds, requests", [
    ("0", None, True, 1), ("0", "truncate-once", False, 1), ("1", "truncate-once", True, 2)])
def test_retries_count_the_attempts_after_the_first(tmp_path, signing_key, env, retries, fault, succeeds, requests):
    """RELOCPY_RETRIES=0 is one attempt and no retry (it used to end in a traceback)."""
    with channel(tmp_path, ARCHIVE, signing_key, env) as (server, client, versions):
        if fault:
            server.faults[NAME] = fault
        result, _ = install({**client, "RELOCPY_RETRIES": retries})
    assert server.handler.hits[NAME] == requests
    if succeeds:
        assert result.returncode == 0, result.stderr
        assert "cpython-3.99.1" in leftovers(versions)
    else:
        assert one_error_line(result).endswith(f"{url(server)}: connection closed after {len(ARCHIVE) // 2} bytes")
        assert leftovers(versions) == []


@pytest.mark.parametrize("name, value, expect", [
    ("RELOCPY_RETRIES", "-1", "is not a whole number of 0 or more"),
    ("RELOCPY_RETRIES", "1.5", "is not a whole number of 0 or more"),
    ("RELOCPY_RETRIES", "many", "is not a whole number of 0 or more"),
    ("RELOCPY_DEADLINE", "0", "is not a positive number of seconds"),
    ("RELOCPY_DEADLINE", "nan", "is not a positive number of seconds"),
    ("RELOCPY_DEADLINE", "inf", "is not a positive number of seconds"),
    ("RELOCPY_TIMEOUT", "-3", "is not a positive number of seconds"),
    ("RELOCPY_LOCK_TIMEOUT", "soon", "is not a positive number of seconds"),
])
def test_transfer_settings_a_user_can_get_wrong(env, name, value, expect):
    result = relocpy("list", env={**env, name: value})
    assert result.returncode == 2
    assert one_error_line(result) == f"relocpy: error: {name}={value!r} {expect}"


# --- leftovers in the cache -------------------------------------------------------------------


def test_a_dead_downloads_part_file_is_swept_and_a_live_one_kept(tmp_path, signing_key, env):
    with channel(tmp_path, ARCHIVE, signing_key, env) as (_, client, versions):
        cache_dir = tmp_path / "home" / "cache" / "relocpy" / "sources" / hashlib.sha256(ARCHIVE).hexdigest()
        cache_dir.mkdir(parents=True)
        dead, live = cache_dir / f".{NAME}.dead.part", cache_dir / f".{NAME}.live.part"
        dead.write_bytes(b"half")
        live.write_bytes(b"half")
        holder = subprocess.Popen(
            [sys.executable, "-c", "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR); "
             "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(30)", str(live)],
            stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout.readline().strip() == "held"
            result, _ = install(client)
        finally:
            holder.kill()
            holder.wait()
    assert result.returncode == 0, result.stderr
    assert not dead.exists() and live.exists()
    assert sorted(p.name for p in cache_dir.iterdir()) == sorted([NAME, live.name])


# --- the measured bomb, end to end --------------------------------------------------------------


def test_a_1_5_gib_bomb_through_install_is_refused_in_bounded_memory(tmp_path, signing_key, env):
    # One member of 1.5 GiB of zeros: its header, then 1536 gzip members of 1 MiB of zeros each.
    piece = gz(bytes(1 << 20))
    bomb = gz(regular("python/bin/python3", SHELL_PYTHON) + header("python/zeros", 1536 << 20)) + piece * 1536 + gz(END)
    with channel(tmp_path, bomb, signing_key, env) as (_, client, versions):
        result, peak, seconds = relocpy_measured("install", "3.99", env=client, scratch=tmp_path)
    assert one_error_line(result).endswith("(a decompression bomb?); refusing the archive")
    assert peak < 150 and seconds < 30, (peak, seconds)
    assert leftovers(versions) == []


def test_a_cache_dir_that_cannot_be_written(tmp_path, served_archive):
    (tmp_path / "cache").write_text("a file where the cache should be")
    with pytest.raises(SourceError) as failure:
        download(entry(url(served_archive)), served_archive.url + "/index.json", client_settings(tmp_path))
    cache = tmp_path / "cache" / "sources" / hashlib.sha256(ARCHIVE).hexdigest()
    assert str(failure.value) == f"{NAME}: cannot write to the cache {cache}: Not a directory"
