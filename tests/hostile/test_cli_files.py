"""Hostile paths for the CLI's file arguments and the files it reads or writes
by itself (the data directory's state, the config file, key files): a
directory where a file belongs, a file where a directory belongs, empty,
not UTF-8, nested absurdly deep, a place the system will not let anyone
write. Each is one `relocpy: error:` line naming the file, its documented exit
code, and nothing written.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from cli_outcome import client_env, refused, run, snapshot

EXIT_USER = 2
NOT_UTF8 = b"\xff\xfe\x00ed25519:"


@pytest.fixture
def home(tmp_path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def odd(tmp_path) -> dict[str, Path]:
    """One of each odd thing a path argument can name."""
    base = tmp_path / "odd"
    base.mkdir()
    (base / "a directory").mkdir()
    (base / "empty").write_bytes(b"")
    (base / "not utf-8").write_bytes(NOT_UTF8)
    (base / "a file").write_text("x\n")
    return {"directory": base / "a directory", "empty": base / "empty", "not utf-8": base / "not utf-8",
            "file": base / "a file", "missing": base / "missing", "under a file": base / "a file" / "child"}


@pytest.fixture
def signed(tmp_path, dist, signing_key, home) -> tuple[Path, str]:
    """A dist with a signed index, and the public key that trusts it."""
    key, public = signing_key
    result = run("index", "build", str(dist), "--base-url", "http://127.0.0.1:9/dl", "--sign", str(key),
                 env=client_env(tmp_path / "publisher"))
    assert result.returncode == 0, result.stderr
    return dist, public


# --- the data directory: state written when an index is first trusted ----------------------------


def test_a_data_directory_that_is_a_file_is_one_line(signed, home):
    dist, public = signed
    (home / "data").mkdir(parents=True)
    (home / "data" / "relocpy").write_text("not a directory\n")
    before = snapshot(home, dist)
    line = refused(run("index", "verify", str(dist), "--trusted-key", public, env=client_env(home)), EXIT_USER)
    assert line == f"relocpy: error: cannot use {home}/data/relocpy/state.json: File exists (it records the index serials seen, against rollback; make its directory writable, or set XDG_DATA_HOME)"
    assert snapshot(home, dist) == before


def test_a_state_file_that_is_a_directory_is_one_line_and_leaves_no_temporary_file(signed, home):
    dist, public = signed
    state = home / "data" / "relocpy" / "state.json"
    state.mkdir(parents=True)
    before = snapshot(home, dist)
    line = refused(run("index", "verify", str(dist), "--trusted-key", public, env=client_env(home)), EXIT_USER)
    assert line == f"relocpy: error: cannot use {state}: Is a directory (it records the index serials seen, against rollback; make its directory writable, or set XDG_DATA_HOME)"
    after = snapshot(home, dist)
    after.pop(str(state) + ".lock", None)  # the state's lock file (empty), beside it for good: not a temporary
    assert after == before


def test_a_data_directory_nobody_may_write_is_one_line(signed, home):
    """/sys refuses a new directory even to root: what a read-only data directory does."""
    dist, public = signed
    env = {**client_env(home), "XDG_DATA_HOME": "/sys"}
    before = snapshot(home, dist, Path("/sys/relocpy"))
    line = refused(run("index", "verify", str(dist), "--trusted-key", public, env=env), EXIT_USER)
    assert re.fullmatch(r"relocpy: error: cannot use /sys/relocpy/state.json: (Operation not permitted|Read-only file system|"
                        r"Permission denied)" + re.escape(" (it records the index serials seen, against rollback; make its directory writable, or set XDG_DATA_HOME)"), line), line
    assert snapshot(home, dist, Path("/sys/relocpy")) == before


def test_an_index_read_again_writes_no_state(signed, home):
    """State is written when a higher serial is first trusted, not on every read."""
    dist, public = signed
    env = client_env(home)
    assert run("index", "verify", str(dist), "--trusted-key", public, env=env).returncode == 0
    state = home / "data" / "relocpy" / "state.json"
    written = state.stat()
    before = snapshot(home, dist)
    again = run("index", "verify", str(dist), "--trusted-key", public, env=env)
    assert again.returncode == 0 and again.stdout.startswith(f"ok: {dist}/index.json channel stable serial 1"), again.stderr
    assert (state.stat().st_ino, state.stat().st_mtime_ns) == (written.st_ino, written.st_mtime_ns)
    assert snapshot(home, dist) == before


# --- the config file (RELOCPY_CONFIG) ----------------------------------------------------------------

CONFIGS = {
    "a directory": (lambda path: path.mkdir(), "{path}: cannot read: Is a directory"),
    "not UTF-8": (lambda path: path.write_bytes(NOT_UTF8), "{path}: not UTF-8 text (byte 0 is 0xff)"),
    "nested 300 deep": (lambda path: path.write_text("x = " + "[" * 300 + "]" * 300 + "\n"),
                        "{path}: nested deeper than 16 levels"),
    "nested 100000 deep": (lambda path: path.write_text("x = " + "[" * 100_000 + "]" * 100_000 + "\n"),
                           "{path}: not valid TOML: nested deeper than 16 levels"),
    "not TOML": (lambda path: path.write_text("index_url = \n"),
                 "{path}: not valid TOML: Invalid value (at line 1, column 13)"),
    "a field of the wrong type": (lambda path: path.write_text('trusted_keys = "ed25519:x"\n'),
                                  "{path}: trusted_keys: Input should be a valid list"),
    "an unknown field": (lambda path: path.write_text('index-url = "http://h/"\n'),
                         "{path}: index-url: Extra inputs are not permitted"),
    "a link to itself": (lambda path: path.symlink_to(path.name),
                         "{path}: cannot read: Too many levels of symbolic links"),
}


@pytest.mark.parametrize("case", CONFIGS, ids=list(CONFIGS))
def test_a_bad_config_file_is_one_line_naming_it(case, tmp_path, home):
    make, expected = CONFIGS[case]
    config = tmp_path / "config.toml"
    make(config)
    before = snapshot(home, config)
    result = run("index", "verify", str(tmp_path), "--trusted-key", "ed25519:" + "A" * 43 + "=",
                 env=client_env(home, RELOCPY_CONFIG=str(config)))
    assert refused(result, EXIT_USER) == "relocpy: error: " + expected.format(path=config)
    assert snapshot(home, config) == before


# --- file arguments -----------------------------------------------------------------------------------

ARGUMENTS = {
    # verb and arguments ({path}: the odd path), the odd thing, the line expected
    "keys public: a directory": (("keys", "public", "{path}"), "directory", "cannot read key {path}: Is a directory"),
    "keys public: empty": (("keys", "public", "{path}"), "empty", "{path} is not an unencrypted PEM private key"),
    "keys public: not UTF-8": (("keys", "public", "{path}"), "not utf-8", "{path} is not an unencrypted PEM private key"),
    "keys public: missing": (("keys", "public", "{path}"), "missing", "cannot read key {path}: No such file or directory"),
    "keys generate: over a directory": (("keys", "generate", "--out", "{path}"), "directory",
                                        "{path} exists; refusing to overwrite a key"),
    "keys generate: under a file": (("keys", "generate", "--out", "{path}"), "under a file",
                                    "{parent}: File exists"),
    "trusted key: not UTF-8": (("index", "verify", "{tmp}", "--trusted-key", "{path}"), "not utf-8",
                               "{path} does not hold an 'ed25519:<base64>' public key"),
    "trusted key: empty": (("index", "verify", "{tmp}", "--trusted-key", "{path}"), "empty",
                           "{path} does not hold an 'ed25519:<base64>' public key"),
    "trusted key: a directory": (("index", "verify", "{tmp}", "--trusted-key", "{path}"), "directory",
                                 "trusted key '{path}' is neither 'ed25519:<base64>' nor a file"),
    "ci matrix output: a directory": (("ci", "matrix", "--github-output", "{path}"), "directory",
                                      "{path}: Is a directory"),
    "ci matrix output: under a file": (("ci", "matrix", "--github-output", "{path}"), "under a file",
                                       "{path}: Not a directory"),
    "ci matrix output: in a missing directory": (("ci", "matrix", "--github-output", "{path}/out"), "missing",
                                                 "{path}/out: No such file or directory"),
    "validate: a directory of nothing": (("validate", "{path}"), "directory",
                                         "{path}: no artifact archives (cpython-*.tar.gz, cpython-*.tar.zst) in "
                                         "this directory"),
    "index build: a file for DIST": (("index", "build", "{path}", "--base-url", "http://h/", "--sign", "{key}"),
                                     "file", "{path} is not a directory"),
}


@pytest.mark.parametrize("case", ARGUMENTS, ids=list(ARGUMENTS))
def test_an_odd_path_argument_is_one_line_naming_it(case, odd, tmp_path, home, signing_key):
    argv, kind, expected = ARGUMENTS[case]
    path = odd[kind]
    fields = {"path": path, "parent": path.parent, "tmp": tmp_path, "key": signing_key[0]}
    before = snapshot(odd["directory"].parent, home)
    result = run(*(arg.format(**fields) for arg in argv), env=client_env(home))
    assert refused(result, EXIT_USER) == "relocpy: error: " + expected.format(**fields)
    assert snapshot(odd["directory"].parent, home) == before


def test_an_export_onto_a_directory_is_one_line_and_leaves_no_temporary_file(signed, tmp_path, home):
    dist, public = signed
    out = tmp_path / "exports" / "uv.json"
    out.mkdir(parents=True)
    env = client_env(home)
    assert run("index", "verify", str(dist), "--trusted-key", public, env=env).returncode == 0  # state recorded
    before = snapshot(out.parent, home, dist)
    line = refused(run("index", "export-uv", str(dist), "--out", str(out), "--trusted-key", public, env=env),
                   EXIT_USER)
    assert re.fullmatch(rf"relocpy: error: {re.escape(str(out.parent))}/\.uv\.json\.[0-9a-f]{{32}}\.tmp -> "
                        rf"{re.escape(str(out))}: Is a directory", line), line
    assert snapshot(out.parent, home, dist) == before


def test_metadata_that_is_a_directory_is_one_line_naming_it(dist, signing_key, home):
    metadata = next(dist.glob("*.json"))
    metadata.unlink()
    metadata.mkdir()
    before = snapshot(dist, home)
    result = run("index", "build", str(dist), "--base-url", "http://h/", "--sign", str(signing_key[0]),
                 env=client_env(home))
    assert refused(result, EXIT_USER) == f"relocpy: error: {metadata}: Is a directory"
    assert snapshot(dist, home) == before


def test_a_cache_directory_that_is_a_file_is_one_line(tmp_path, home, sources_mirror):
    cache = tmp_path / "cache"
    cache.write_text("")
    before = snapshot(cache, home)
    result = run("fetch", "--python", "3.13.15", "--target", "x86_64-unknown-linux-gnu", "--variant", "noopt",
                 "--offline", "--mirror", str(sources_mirror), "--cache-dir", str(cache), env=client_env(home))
    line = refused(result, EXIT_USER)
    assert re.fullmatch(rf"relocpy: error: Python-3\.13\.15\.tar\.xz: cannot write to the cache "
                        rf"{re.escape(str(cache))}/sources/[0-9a-f]{{64}}: Not a directory", line), line
    assert snapshot(cache, home) == before


def test_a_failing_command_prints_nothing_but_its_line(odd, home):
    """The line is the whole of stderr: no usage text, no warning, no traceback."""
    result = run("keys", "public", str(odd["directory"]), env=client_env(home))
    assert result.stderr == f"relocpy: error: cannot read key {odd['directory']}: Is a directory\n"
    assert result.stdout == "" and not os.path.lexists(home)
