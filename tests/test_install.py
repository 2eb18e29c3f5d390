"""install, list, run, uninstall against a real HTTP server on loopback, and every refusal."""

import json
import os
import subprocess
import tarfile

import pytest

from support import EPOCH, HOST_VERSION, MINOR, LoopbackServer, artifact_key, member, one_error_line, relocpy, tar_with, write_metadata


def publish_index(dist, key, env, base_url, *extra):
    relocpy("index", "build", str(dist), "--base-url", base_url, "--sign", str(key), *extra, env=env, check=True)


@pytest.fixture
def client(served, dist, signing_key, env, tmp_path):
    """A served, signed dist and the environment of a client trusting its key."""
    key, public = signing_key
    publish_index(dist, key, env, served.url)
    versions = tmp_path / "versions"
    client_env = {**env, "RELOCPY_INDEX_URL": served.url + "/index.json", "RELOCPY_TRUSTED_KEYS": public,
                  "RELOCPY_INSTALL_DIR": str(versions)}
    return served, client_env, versions


def installed_names(versions):
    if not versions.exists():
        return []
    return sorted(p.name for p in versions.iterdir() if not p.name.startswith(".")) + [
        p.name for p in (versions / ".store").glob("*")] + [p.name for p in versions.glob(".staging-*")]


def test_install_run_list_reinstall_uninstall(client):
    server, env, versions = client
    relocpy("install", MINOR, env=env, check=True)
    name = f"cpython-{HOST_VERSION}"
    link = versions / name
    assert link.is_symlink() and (link / "bin" / "python3").exists()
    ran = relocpy("run", MINOR, "--", "-c", "import sys; print(sys.prefix, 'a b')", env=env, check=True)
    assert ran.stdout.strip() == f"{link} a b"  # the stable link, not the store dir
    listed = relocpy("list", "--available", env=env, check=True).stdout
    assert f"{name}" in listed and "installed" in listed and "available" in listed
    rows = json.loads(relocpy("list", "--json", env=env, check=True).stdout)
    assert rows == [{"name": name, "state": "installed", "where": str(link)}]
    store_entry, root = os.path.split(os.readlink(link))
    assert root == "python" and os.path.dirname(store_entry) == ".store"
    assert not (link / "RELOCPY.json").exists()  # beside the tree, where no archive member can be
    receipt = json.loads((versions / store_entry / "RELOCPY.json").read_text())
    assert receipt["key"]["platform"] == {"os": "linux", "arch": "x86_64", "libc": "glibc", "floor": "2.17"}
    assert receipt["key"]["version"] == HOST_VERSION
    first_store = os.path.realpath(link)
    again = relocpy("install", f"cpython@{HOST_VERSION}", env=env, check=True)
    assert "already installed" in again.stderr and os.path.realpath(link) == first_store
    relocpy("install", HOST_VERSION, "--reinstall", env=env, check=True)
    assert os.path.realpath(link) != first_store and not os.path.exists(os.path.dirname(first_store))
    relocpy("uninstall", MINOR, env=env, check=True)
    assert installed_names(versions) == []
    assert "not installed" in one_error_line(relocpy("run", MINOR, env=env))


def test_config_file_supplies_index_and_keys(client, tmp_path):
    server, env, versions = client
    config = tmp_path / "home" / "config" / "relocpy" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'index_url = "{env["RELOCPY_INDEX_URL"]}"\ntrusted_keys = ["{env["RELOCPY_TRUSTED_KEYS"]}"]\n'
                      f'install_dir = "{versions}"\n')
    bare = {k: v for k, v in env.items() if k not in ("RELOCPY_INDEX_URL", "RELOCPY_TRUSTED_KEYS", "RELOCPY_INSTALL_DIR")}
    relocpy("install", MINOR, env=bare, check=True)
    assert (versions / f"cpython-{HOST_VERSION}").is_symlink()


def test_no_artifact_for_variant_or_version(client):
    _, env, versions = client
    assert "no cpython 3.99" in one_error_line(relocpy("install", "3.99", env=env))
    assert "freethreaded" in one_error_line(relocpy("install", MINOR, "--variant", "freethreaded", env=env))
    assert "bad version spec" in one_error_line(relocpy("install", "three", env=env))
    assert installed_names(versions) == []


def refused(env, versions, expect):
    line = one_error_line(relocpy("install", MINOR, env=env))
    assert expect in line, line
    assert installed_names(versions) == []
    return line


def test_tampered_index_refused(client, dist):
    _, env, versions = client
    index = dist / "index.json"
    tampered = index.read_text().replace('\\"serial\\":1', '\\"serial\\":7')  # inside the signed payload text
    assert tampered != index.read_text()
    index.write_text(tampered)
    refused(env, versions, "bad signature")


def test_unknown_key_refused(client, tmp_path):
    _, env, versions = client
    stranger = relocpy("keys", "generate", "--out", str(tmp_path / "x.key"), env=env, check=True).stdout.strip()
    refused({**env, "RELOCPY_TRUSTED_KEYS": stranger}, versions, "not signed by a trusted key")


def test_expired_index_refused(client, dist, signing_key):
    _, env, versions = client
    publish_index(dist, signing_key[0], env, client[0].url, "--expires", "0m")
    refused(env, versions, "expired")


def test_rollback_refused(client, dist, signing_key):
    server, env, versions = client
    old = (dist / "index.json").read_bytes()
    publish_index(dist, signing_key[0], env, server.url)  # serial 2
    relocpy("index", "verify", server.url, env=env, check=True)
    (dist / "index.json").write_bytes(old)
    refused(env, versions, "rollback")


def test_artifact_bytes_not_matching_hash_refused(client, dist):
    _, env, versions = client
    archive = next(dist.glob("*.tar.gz"))
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(data))
    refused(env, versions, "sha256")
    assert not list((versions.parent / "home" / "cache").rglob("*.tar.gz"))


def test_truncated_once_is_retried(client):
    server, env, versions = client
    name = artifact_key().filename
    server.faults[name] = "truncate-once"
    relocpy("install", MINOR, env=env, check=True)
    assert server.handler.hits[name] >= 2
    assert (versions / f"cpython-{HOST_VERSION}").is_symlink()


@pytest.mark.parametrize("fault", ["truncate", "stall"])
def test_server_that_keeps_failing_fails_cleanly(client, fault):
    server, env, versions = client
    server.faults[artifact_key().filename] = fault
    line = refused({**env, "RELOCPY_RETRIES": "2", "RELOCPY_TIMEOUT": "1"}, versions, "cannot get")
    assert artifact_key().filename in line


EVIL = {
    "dotdot": ([member("python/bin/python3"), member("python/../evil")], "contains '..'"),
    "absolute": ([member("python/bin/python3"), member("/tmp/evil-abs")], "absolute path"),
    "symlink-out": ([member("python/bin/python3"), member("python/lib", tarfile.SYMTYPE, linkname="../../etc")], "points outside"),
    "symlink-abs": ([member("python/bin/python3"), member("python/x", tarfile.SYMTYPE, linkname="/etc/passwd")], "points outside"),
    "hardlink-out": ([member("python/bin/python3"), member("python/h", tarfile.LNKTYPE, linkname="etc/passwd")], "points outside"),
    "device": ([member("python/bin/python3"), member("python/dev", tarfile.CHRTYPE)], "device"),
    "fifo": ([member("python/bin/python3"), member("python/fifo", tarfile.FIFOTYPE)], "device or fifo"),
    # Each link looks inside on its own; python/a/b is python/, so the second climbs two levels out.
    "symlink-chain": ([member("python/bin/python3"), member("python/a", tarfile.DIRTYPE),
                       member("python/a/b", tarfile.SYMTYPE, linkname=".."),
                       member("python/x", tarfile.SYMTYPE, linkname="a/b/../../etc")], "points outside"),
    "under-symlink": ([member("python/bin/python3"), member("python/l", tarfile.SYMTYPE, linkname="bin"),
                       member("python/l/python3")], "under a symlink"),
    "twice": ([member("python/bin/python3"), member("python/bin/python3", tarfile.SYMTYPE, linkname="x")], "appears twice"),
    "hardlink-to-link": ([member("python/bin/python3"), member("python/s", tarfile.SYMTYPE, linkname="bin/python3"),
                          member("python/h", tarfile.LNKTYPE, linkname="python/s")], "points outside"),
}


def refused_install(dist, version, members, signing_key, env):
    """Serve a signed index of one archive made of `members`; `relocpy install`
    of it must fail: (its error line, the install dir)."""
    dist.mkdir()
    key = artifact_key(version=version)
    tar_with(dist / key.filename, members)
    write_metadata(dist / key.filename, key)
    with LoopbackServer(dist) as server:
        publish_index(dist, signing_key[0], env, server.url)
        versions = dist.parent / "versions"
        client_env = {**env, "RELOCPY_INDEX_URL": server.url, "RELOCPY_TRUSTED_KEYS": signing_key[1],
                      "RELOCPY_INSTALL_DIR": str(versions)}
        line = one_error_line(relocpy("install", version.rsplit(".", 1)[0], env=client_env))
    return line, versions


@pytest.mark.parametrize("case", sorted(EVIL))
def test_unsafe_archive_refused(case, tmp_path, signing_key, env):
    members, expect = EVIL[case]
    line, versions = refused_install(tmp_path / "evil", "3.99.1", members, signing_key, env)
    assert expect in line and "refusing" in line
    assert installed_names(versions) == []
    assert not (tmp_path.parent / "evil").exists() and not os.path.exists("/tmp/evil-abs")


def test_install_from_a_local_index_path(dist, signing_key, env, tmp_path):
    relocpy("index", "build", str(dist), "--base-url", str(dist), "--sign", str(signing_key[0]), env=env, check=True)
    versions = tmp_path / "v"
    relocpy("install", MINOR, "--index", str(dist), "--trusted-key", signing_key[1], "--install-dir", str(versions),
            env=env, check=True)
    out = subprocess.run([str(versions / f"cpython-{HOST_VERSION}" / "bin" / "python3"), "-c", "import ssl; print(1)"],
                         capture_output=True, text=True)
    assert out.stdout.strip() == "1"
    prefix = versions / f"cpython-{HOST_VERSION}"
    os_py = prefix / "lib" / f"python{MINOR}" / "os.py"
    assert os_py.stat().st_mtime == EPOCH  # .pyc files are checked against their source's mtime
    assert os_py.stat().st_mode & 0o777 == 0o644 and os.access(prefix / "bin" / "python3", os.X_OK)


def test_an_interpreter_that_does_not_start_is_reported_with_its_status_and_stderr(tmp_path, signing_key, env):
    failing = b"#!/bin/sh\necho 'loading the interpreter' >&2\necho './python/bin/python3: symbol lookup error: undefined symbol: , version' >&2\nexit 127\n"
    line, versions = refused_install(tmp_path / "broken", "3.99.2", [member("python/bin/python3", data=failing)],
                                     signing_key, env)
    assert line == ("relocpy: error: the unpacked interpreter does not start: exit status 127: loading the interpreter"
                    " | ./python/bin/python3: symbol lookup error: undefined symbol: , version; nothing installed")
    assert installed_names(versions) == []


def test_a_cpu_level_build_installs_and_runs_as_the_version_asked_for(dist, served, signing_key, env, tmp_path,
                                                                      monkeypatch):
    # The index offers the default build and an x86-64-v3 one; on a v3 host
    # `install 3.x` takes the v3 one, and `run 3.x`/`uninstall 3.x` find it.
    from relocpy import install as installer
    from relocpy.settings import ClientSettings

    archive = next(dist.glob("*.tar.gz"))
    v3 = artifact_key(variant="pgo+lto+x86_64_v3")
    (dist / v3.filename).write_bytes(archive.read_bytes())
    write_metadata(dist / v3.filename, v3)
    key, public = signing_key
    publish_index(dist, key, env, served.url)
    monkeypatch.setattr(installer, "host_levels", lambda: ["x86_64_v2", "x86_64_v3"])
    for name in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME"):
        monkeypatch.setenv(name, env[name])
    settings = ClientSettings.resolve(index_url=served.url + "/index.json", trusted_keys=[public],
                                      install_dir=tmp_path / "versions", channel=None)
    installer.install(MINOR, settings)
    receipt = json.loads(next((tmp_path / "versions" / ".store").glob("*/RELOCPY.json")).read_text())
    assert receipt["key"]["variant"] == "pgo+lto+x86_64_v3"
    found = installer.find_installed(MINOR, settings.install_dir)
    assert found.name == f"cpython-{HOST_VERSION}" and found.python.exists()
    assert installer.uninstall(MINOR, settings).name == found.name
