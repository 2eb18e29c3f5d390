"""Rollback, channel binding and the client's rollback state, through the real CLI.

The floor is kept per (channel, signing key): an older index is refused
however its location is spelled, another channel's index neither passes nor
moves this channel's floor, and a state file that cannot be read refuses
everything instead of forgetting.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support import LoopbackServer, one_error_line
from trust_support import Signer, index, run, sealed

REFUSED = 1


@pytest.fixture(scope="module")
def signers(tmp_path_factory):
    root = tmp_path_factory.mktemp("keys")
    return Signer(root / "a.key"), Signer(root / "b.key")


@pytest.fixture
def site(tmp_path):
    path = tmp_path / "site"
    (path / "sub").mkdir(parents=True)
    with LoopbackServer(path) as server:
        yield path, server.url


def state_of(env) -> dict:
    return json.loads((Path(env["XDG_DATA_HOME"]) / "relocpy" / "state.json").read_text())


def verify(location: str, env, *keys: Signer, channel: str | None = None):
    argv = ["index", "verify", location, *(a for k in keys for a in ("--trusted-key", k.public))]
    return run(*argv, *(["--channel", channel] if channel else []), env=env)


SPELLINGS = {
    "localhost": lambda url, site: url.replace("127.0.0.1", "localhost") + "/index.json",
    "upper-case-host": lambda url, site: url.replace("127.0.0.1", "LOCALHOST") + "/index.json",
    "double-slash": lambda url, site: url + "//index.json",
    "dot-segment": lambda url, site: url + "/./index.json",
    "directory-url": lambda url, site: url + "/",
    "bare-origin": lambda url, site: url,
    "local-directory": lambda url, site: str(site),
    "local-path": lambda url, site: str(site / "index.json"),
    "dot-dot-path": lambda url, site: str(site / "sub" / ".." / "index.json"),
    "doubled-slashes-path": lambda url, site: str(site / "index.json").replace("/", "//"),
    "file-url": lambda url, site: "file://" + str(site / "index.json"),
    "mirror-copy": lambda url, site: str(_mirror(site)),
}


def _mirror(site):
    mirror = site.parent / "mirror"
    mirror.mkdir(exist_ok=True)
    shutil.copy(site / "index.json", mirror / "index.json")
    return mirror


@pytest.mark.parametrize("spelling", SPELLINGS.values(), ids=SPELLINGS.keys())
def test_replayed_older_serial_is_refused_under_any_spelling_of_the_location(spelling, site, signers, env):
    path, url = site
    signer = signers[0]
    (path / "index.json").write_bytes(sealed(index(serial=5).payload(), signer))
    assert verify(url + "/index.json", env, signer).returncode == 0
    (path / "index.json").write_bytes(sealed(index(serial=4).payload(), signer))  # the replay
    result = verify(spelling(url, path), env, signer)
    line = one_error_line(result)
    assert "index serial 4 of channel 'stable' is lower than 5 already seen" in line and "rollback refused" in line
    assert result.returncode == REFUSED
    assert state_of(env)["seen"] == {"stable": {signer.key_id: 5}}


def test_another_channel_with_a_higher_serial_neither_passes_nor_poisons_the_floor(site, signers, env):
    """The defect: nightly's serial 1000 was accepted at the stable URL, then stable itself refused as rollback."""
    path, url = site
    signer = signers[0]
    (path / "index.json").write_bytes(sealed(index(serial=3).payload(), signer))
    assert verify(url, env, signer).returncode == 0
    (path / "index.json").write_bytes(sealed(index(serial=1000, channel="nightly").payload(), signer))
    result = verify(url, env, signer)
    assert "is the index of channel 'nightly', not 'stable': refused" in one_error_line(result)
    assert result.returncode == REFUSED
    (path / "index.json").write_bytes(sealed(index(serial=4).payload(), signer))
    assert verify(url, env, signer).returncode == 0
    assert state_of(env)["seen"] == {"stable": {signer.key_id: 4}}


def test_a_client_expecting_another_channel_keeps_a_floor_of_its_own(site, signers, env):
    path, url = site
    signer = signers[0]
    (path / "index.json").write_bytes(sealed(index(serial=1000, channel="nightly").payload(), signer))
    assert verify(url, env, signer, channel="nightly").returncode == 0
    (path / "index.json").write_bytes(sealed(index(serial=2).payload(), signer))
    assert verify(url, env, signer).returncode == 0
    assert state_of(env)["seen"] == {"nightly": {signer.key_id: 1000}, "stable": {signer.key_id: 2}}


def test_rotation_carries_the_floor_to_the_new_key(site, signers, env):
    """Trust old+new while both sign, then only new: an index the new key signed earlier is still a rollback."""
    path, url = site
    old, new = signers
    overlap_7 = sealed(index(serial=7).payload(), old, new)
    (path / "index.json").write_bytes(sealed(index(serial=9).payload(), old, new))
    assert verify(url, env, old, new).returncode == 0
    (path / "index.json").write_bytes(overlap_7)
    line = one_error_line(verify(url, env, new))
    assert "index serial 7 of channel 'stable' is lower than 9" in line


def test_the_retired_key_cannot_roll_back_past_what_the_new_key_signed(site, signers, env):
    path, url = site
    old, new = signers
    (path / "index.json").write_bytes(sealed(index(serial=9).payload(), old, new))
    assert verify(url, env, old, new).returncode == 0
    (path / "index.json").write_bytes(sealed(index(serial=10).payload(), new))
    assert verify(url, env, old, new).returncode == 0
    (path / "index.json").write_bytes(sealed(index(serial=8).payload(), old))  # signed before the rotation
    assert "is lower than 9" in one_error_line(verify(url, env, old, new))
    assert state_of(env)["seen"] == {"stable": {old.key_id: 9, new.key_id: 10}}


CORRUPT_STATES = {
    "not-json": b"{",
    "empty": b"",
    "a-list": b"[]",
    "old-format-by-url": b'{"serials": {"http://127.0.0.1/index.json": 3}}',
    "negative-serial": b'{"format": 1, "seen": {"stable": {"0123456789abcdef": -1}}}',
    "serial-as-text": b'{"format": 1, "seen": {"stable": {"0123456789abcdef": "9"}}}',
    "unknown-format": b'{"format": 2, "seen": {}}',
    "binary": bytes(range(256)),
}


@pytest.mark.parametrize("content", CORRUPT_STATES.values(), ids=CORRUPT_STATES.keys())
def test_corrupt_state_fails_closed_naming_the_file(content, site, signers, env):
    path, url = site
    (path / "index.json").write_bytes(sealed(index(serial=5).payload(), signers[0]))
    state = Path(env["XDG_DATA_HOME"]) / "relocpy" / "state.json"
    state.parent.mkdir(parents=True)
    state.write_bytes(content)
    result = verify(url, env, signers[0])
    line = one_error_line(result)
    assert f"{state} is corrupt" in line and "delete it to start over" in line
    assert result.returncode == REFUSED
    assert state.read_bytes() == content


def test_state_that_is_a_directory_fails_closed(site, signers, env):
    path, url = site
    (path / "index.json").write_bytes(sealed(index(serial=5).payload(), signers[0]))
    state = Path(env["XDG_DATA_HOME"]) / "relocpy" / "state.json"
    state.mkdir(parents=True)
    line = one_error_line(verify(url, env, signers[0]))
    assert f"cannot use {state}: Is a directory" in line


def test_clients_at_once_lose_no_update(site, signers, env):
    """Eight clients verify eight channels at the same moment; every channel's floor is kept."""
    path, _ = site
    signer = signers[0]
    channels = [f"c{n}" for n in range(8)]
    for n, channel in enumerate(channels):
        (path / channel).mkdir()
        (path / channel / "index.json").write_bytes(sealed(index(serial=10 + n, channel=channel).payload(), signer))
    clients = [subprocess.Popen([sys.executable, "-m", "relocpy", "index", "verify", str(path / channel),
                                 "--trusted-key", signer.public, "--channel", channel],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
               for channel in channels]
    for client in clients:
        _, err = client.communicate(timeout=60)
        assert client.returncode == 0, err
    assert state_of(env)["seen"] == {c: {signer.key_id: 10 + n} for n, c in enumerate(channels)}
