"""The versions dir as an attacker or a crash leaves it: archive members named
like the installer's own files, links aimed outside the install root,
corrupt receipts, leftovers of killed installers, and a lock someone holds."""

import json
import os
import subprocess
import sys
import tarfile
import time
from contextlib import contextmanager

import pytest

from relocpy.errors import InstallError
from relocpy.install import find_installed, install_archive, installed
from relocpy.store import Store
from support import (END, SHELL_PYTHON, artifact_key, channel, gz, leftovers, member, one_error_line, regular, relocpy,
                     tar_bytes)

NAME = "cpython-3.99.1"
RECEIPT = {"key": artifact_key(version="3.99.1").model_dump(mode="json")}


def archive(tmp_path, *extra) -> "os.PathLike":
    path = tmp_path / "a.tar.gz"
    path.write_bytes(gz(tar_bytes([member("python/bin/python3", data=SHELL_PYTHON), *extra])))
    return path


def installed_here(tmp_path, *extra):
    versions = tmp_path / "versions"
    install_archive(archive(tmp_path, *extra), NAME, RECEIPT, Store(versions))
    return versions


def store_entry(versions):
    return versions / os.path.dirname(os.readlink(versions / NAME))


@pytest.fixture
def outside(tmp_path):
    """A directory outside the install root that must survive everything."""
    path = tmp_path / "precious"
    path.mkdir()
    (path / "data").write_text("keep me")
    return path


def intact(outside) -> bool:
    return (outside / "data").read_text() == "keep me"


# --- members named like installer files ----------------------------------------------------


@pytest.mark.parametrize("shape", ["symlink-to-interpreter", "dangling-symlink", "forged-file", "directory"])
def test_a_member_where_the_receipt_used_to_go_cannot_touch_the_receipt(tmp_path, shape):
    lookalike = {
        "symlink-to-interpreter": member("python/RELOCPY.json", tarfile.SYMTYPE, linkname="bin/python3"),
        "dangling-symlink": member("python/RELOCPY.json", tarfile.SYMTYPE, linkname="nothing-here"),
        "forged-file": member("python/RELOCPY.json", data=json.dumps({"key": {"version": "9.9.9"}}).encode()),
        "directory": member("python/RELOCPY.json", tarfile.DIRTYPE, None),
    }[shape]
    versions = installed_here(tmp_path, lookalike)
    assert (versions / NAME / "bin" / "python3").read_bytes() == SHELL_PYTHON  # the interpreter is untouched
    receipt = store_entry(versions) / "RELOCPY.json"
    assert not receipt.is_symlink() and json.loads(receipt.read_text()) == RECEIPT
    assert [(item.name, item.version, item.problem) for item in installed(versions)] == [(NAME, "3.99.1", None)]


# --- links aimed outside the install root ------------------------------------------------------


def aim(versions, target) -> None:
    versions.mkdir(parents=True, exist_ok=True)
    link = versions / NAME
    if os.path.lexists(link):
        link.unlink()
    link.symlink_to(target)


@pytest.mark.parametrize("target", ["absolute", ".store/../../precious", ".store/evil", ".store/evil/python"])
def test_reinstall_never_deletes_what_a_link_points_to_outside_the_store(tmp_path, outside, target):
    versions = tmp_path / "versions"
    (versions / ".store").mkdir(parents=True)
    (versions / ".store" / "evil").symlink_to(outside)
    aim(versions, outside if target == "absolute" else target)
    install_archive(archive(tmp_path), NAME, RECEIPT, Store(versions))  # a reinstall over the aimed link
    assert intact(outside)
    assert os.readlink(versions / NAME).startswith(".store/cpython-3.99.1-")


def test_uninstall_of_an_aimed_link_removes_only_the_link(tmp_path, outside, env):
    versions = tmp_path / "versions"
    aim(versions, outside)
    result = relocpy("uninstall", "3.99", "--install-dir", str(versions), env=env, check=True)
    assert "left its target alone" in result.stderr and intact(outside)
    assert not os.path.lexists(versions / NAME)


def test_a_real_directory_in_the_versions_place_is_not_replaced(tmp_path):
    versions = tmp_path / "versions"
    (versions / NAME).mkdir(parents=True)
    with pytest.raises(InstallError) as failure:
        install_archive(archive(tmp_path), NAME, RECEIPT, Store(versions))
    assert str(failure.value) == f"{versions / NAME} exists and is not a link relocpy made; move it away first"
    assert leftovers(versions) == [NAME]


def test_a_versions_dir_that_cannot_be_made(tmp_path):
    (tmp_path / "file").write_text("")
    versions = tmp_path / "file" / "versions"
    with pytest.raises(InstallError) as failure:
        install_archive(archive(tmp_path), NAME, RECEIPT, Store(versions))
    assert str(failure.value) == f"cannot write to {versions}: Not a directory"


# --- corrupt receipts --------------------------------------------------------------------------


def corrupt(receipt, how: str) -> None:
    receipt.unlink()
    if how == "garbage":
        receipt.write_bytes(b"\x00{not json")
    elif how == "no-key":
        receipt.write_text('{"index": "x"}')
    elif how == "bad-key":
        receipt.write_text('{"key": {"version": 3}}')
    elif how == "dangling-link":
        receipt.symlink_to("nowhere")
    elif how == "directory":
        receipt.mkdir()
    elif how == "huge":
        receipt.write_text('{"key": "' + "x" * (2 << 20) + '"}')
    elif how == "missing":
        pass


CORRUPTIONS = ["garbage", "no-key", "bad-key", "dangling-link", "directory", "huge", "missing"]


@pytest.mark.parametrize("how", CORRUPTIONS)
def test_a_corrupt_receipt_is_reported_and_repaired(tmp_path, how):
    versions = installed_here(tmp_path)
    receipt = store_entry(versions) / "RELOCPY.json"
    corrupt(receipt, how)
    [item] = installed(versions)
    assert (item.name, item.version, item.variant) == (NAME, "3.99.1", None)
    assert item.problem.startswith(f"its receipt {receipt} ")
    with pytest.raises(InstallError, match=f"^{NAME} in .* is broken: its receipt "):
        find_installed("3.99", versions)
    install_archive(archive(tmp_path), NAME, RECEIPT, Store(versions))  # install over it repairs it
    assert [i.problem for i in installed(versions)] == [None]
    assert len(list((versions / ".store").iterdir())) == 1


def test_list_and_run_with_a_corrupt_receipt_through_the_cli(tmp_path, env):
    versions = installed_here(tmp_path)
    corrupt(store_entry(versions) / "RELOCPY.json", "garbage")
    listed = relocpy("list", "--json", "--install-dir", str(versions), env=env, check=True)
    assert json.loads(listed.stdout) == [{"name": NAME, "state": "broken", "where": str(versions / NAME)}]
    assert f"{NAME} is broken: its receipt" in listed.stderr
    line = one_error_line(relocpy("run", "3.99", "--install-dir", str(versions), env=env))
    assert line.startswith(f"relocpy: error: {NAME} in {versions} is broken: its receipt ")
    relocpy("uninstall", "3.99", "--install-dir", str(versions), env=env, check=True)
    assert leftovers(versions) == []


# --- leftovers ---------------------------------------------------------------------------------


@contextmanager
def holding(path, what: str = "directory"):
    """Another process holding a flock on path (as a live installer does)."""
    flags = "os.O_RDONLY | os.O_DIRECTORY" if what == "directory" else "os.O_RDWR | os.O_CREAT"
    code = (f"import fcntl, os, sys, time; fd = os.open(sys.argv[1], {flags}); fcntl.flock(fd, fcntl.LOCK_EX); "
            "os.write(fd, sys.argv[2].encode()) if sys.argv[2] else None; print('held', flush=True); "
            "time.sleep(float(sys.argv[3]))")
    text = "relocpy (pid 4242, install cpython-3.98.0, since 01:02:03)" if what == "lock" else ""
    holder = subprocess.Popen([sys.executable, "-c", code, str(path), text, "30"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.kill()
        holder.wait()


def test_leftovers_of_killed_installers_are_swept_by_the_next_one(tmp_path):
    versions = installed_here(tmp_path)
    dead_staging = versions / ".staging-0123456789ab"
    (dead_staging / "python" / "bin").mkdir(parents=True)
    (dead_staging / "python" / "bin" / "python3").write_bytes(b"half")
    orphan = versions / ".store" / "cpython-3.98.0-0123456789ab"
    (orphan / "python").mkdir(parents=True)
    half_link = versions / f".{NAME}.0123.link"
    half_link.symlink_to(".store/whatever")
    live_staging = versions / ".staging-fedcba987654"
    live_staging.mkdir()
    with holding(live_staging):
        install_archive(archive(tmp_path), "cpython-3.99.2", RECEIPT, Store(versions))
        assert sorted(leftovers(versions)) == sorted(
            [NAME, "cpython-3.99.2", live_staging.name, *(f".store/{p.name}" for p in (versions / ".store").iterdir())])
        assert not dead_staging.exists() and not orphan.exists() and not os.path.lexists(half_link)
        assert live_staging.is_dir()
    assert len(list((versions / ".store").iterdir())) == 2


def test_a_link_from_before_the_receipt_moved_is_kept_listed_and_replaced(tmp_path):
    """Older installs link to the store entry itself and keep the receipt inside the tree."""
    versions = tmp_path / "versions"
    old = versions / ".store" / "cpython-3.99.1-0ld0ld0ld0ld"
    (old / "bin").mkdir(parents=True)
    (old / "bin" / "python3").write_bytes(SHELL_PYTHON)
    (old / "RELOCPY.json").write_text(json.dumps(RECEIPT))
    (versions / NAME).symlink_to(".store/cpython-3.99.1-0ld0ld0ld0ld")
    Store(versions).sweep()
    assert old.is_dir() and [(i.name, i.problem) for i in installed(versions)] == [(NAME, None)]
    install_archive(archive(tmp_path), NAME, RECEIPT, Store(versions))
    assert not old.exists() and [(i.name, i.problem) for i in installed(versions)] == [(NAME, None)]


# --- the lock ----------------------------------------------------------------------------------


ARCHIVE = gz(regular("python/bin/python3", SHELL_PYTHON) + END)


def test_a_stuck_installer_holding_the_lock_is_named_and_waited_for_at_most_the_timeout(tmp_path, signing_key, env):
    with channel(tmp_path, ARCHIVE, signing_key, env) as (_, client, versions):
        versions.mkdir()
        with holding(versions / ".lock", "lock"):
            started = time.monotonic()
            result = relocpy("install", "3.99", env={**client, "RELOCPY_LOCK_TIMEOUT": "1"})
            seconds = time.monotonic() - started
    holder = "relocpy (pid 4242, install cpython-3.98.0, since 01:02:03)"
    assert f"waiting for {holder} to release {versions / '.lock'} (at most 1 s: RELOCPY_LOCK_TIMEOUT)" in result.stderr
    assert one_error_line(result) == (f"relocpy: error: {holder} still holds {versions / '.lock'} after 1 s; nothing "
                                      "changed (stop that process, or wait longer with RELOCPY_LOCK_TIMEOUT)")
    assert result.returncode == 1 and seconds < 10
    assert leftovers(versions) == []


def test_an_install_waiting_for_the_lock_goes_on_once_it_is_free(tmp_path, signing_key, env):
    with channel(tmp_path, ARCHIVE, signing_key, env) as (_, client, versions):
        versions.mkdir()
        with holding(versions / ".lock", "lock") as holder:
            waiting = subprocess.Popen([sys.executable, "-m", "relocpy", "install", "3.99"], env=client,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            time.sleep(1.5)
            holder.kill()
            _, stderr = waiting.communicate(timeout=60)
    assert waiting.returncode == 0, stderr
    assert "waiting for relocpy (pid 4242" in stderr and "installed" in stderr
    assert (versions / NAME / "bin" / "python3").read_bytes() == SHELL_PYTHON
