"""Hostile index.json files, each checked by the real `relocpy index verify`.

Every case is refused with one `relocpy: error:` line and its documented
exit code (1: a trust check refused it; 2: it is not a readable index), in
bounded time, and nothing is recorded in the client's rollback state.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from relocpy.index import MAX_INDEX_BYTES, MAX_SERIAL
from support import one_error_line
from trust_support import Signer, b64, entry, envelope, index, run, sealed

REFUSED, UNREADABLE = 1, 2


@pytest.fixture(scope="module")
def signers(tmp_path_factory):
    """(the trusted key, a stranger's key, a second trusted key)."""
    root = tmp_path_factory.mktemp("keys")
    return Signer(root / "trusted.key"), Signer(root / "stranger.key"), Signer(root / "second.key")


def good(serial: int = 5, **fields) -> bytes:
    return index(serial=serial, **fields).payload()


def flipped(payload: bytes, old: bytes, new: bytes) -> bytes:
    assert old in payload, old
    return payload.replace(old, new, 1)


# Each case: (id, how to make index.json from (trusted, stranger, second), exit code, the error line's gist).
CASES = [
    # --- the payload altered after signing --------------------------------------------------------
    ("forged-serial", lambda t, s, o: envelope(flipped(good(), b'"serial":5', b'"serial":9'), t.sign(good())),
     REFUSED, "bad signature"),
    ("forged-sha256", lambda t, s, o: envelope(flipped(good(), b"a" * 64, b"f" * 64), t.sign(good())),
     REFUSED, "bad signature"),
    ("forged-url", lambda t, s, o: envelope(flipped(good(), b'"url":"', b'"url":"http://evil.invalid/'),
                                            t.sign(good())), REFUSED, "bad signature"),
    ("forged-channel", lambda t, s, o: envelope(flipped(good(), b'"stable"', b'"stablf"'), t.sign(good())),
     REFUSED, "bad signature"),
    ("forged-expiry", lambda t, s, o: envelope(flipped(good(), b'"expires":"2', b'"expires":"3'), t.sign(good())),
     REFUSED, "bad signature"),
    ("same-json-other-bytes", lambda t, s, o: envelope(good().replace(b",", b", "), t.sign(good())),
     REFUSED, "bad signature"),
    ("payload-with-nul", lambda t, s, o: envelope(good() + b"\x00", t.sign(good())), REFUSED, "bad signature"),
    ("lone-surrogate-in-payload", lambda t, s, o: envelope(good()[:-1] + "\ud800}".encode("utf-8", "surrogatepass"),
                                                           t.sign(good())), UNREADABLE, "Invalid JSON"),
    # --- signatures that do not fit --------------------------------------------------------------
    ("signature-over-other-bytes", lambda t, s, o: envelope(good(), t.sign(good(serial=6))),
     REFUSED, "bad signature"),
    ("signature-of-other-channel", lambda t, s, o: envelope(good(), t.sign(good(channel="nightly"))),
     REFUSED, "bad signature"),
    ("no-signature", lambda t, s, o: envelope(good(), []), REFUSED, "not signed by a trusted key (signed by: none)"),
    ("wrong-key", lambda t, s, o: sealed(good(), s), REFUSED, "not signed by a trusted key (signed by: "),
    ("stranger-claims-trusted-id", lambda t, s, o: envelope(good(), [{**s.sign(good())[0], "key_id": t.key_id}]),
     REFUSED, "bad signature by key"),
    ("signature-not-base64", lambda t, s, o: envelope(good(), [{"key_id": t.key_id, "signature": "!!!!"}]),
     REFUSED, "bad signature by key"),
    ("signature-truncated", lambda t, s, o: envelope(good(), [{**t.sign(good())[0],
                                                              "signature": b64(b"\x01" * 32)}]),
     REFUSED, "bad signature by key"),
    ("good-and-bad-trusted-signatures", lambda t, s, o: envelope(good(), t.sign(good()) + o.sign(good(serial=1))),
     REFUSED, "bad signature by key"),
    ("signature-too-long", lambda t, s, o: envelope(good(), [{"key_id": t.key_id, "signature": "A" * 4096}]),
     UNREADABLE, "not a relocpy index (signatures.0.signature"),
    ("key-id-malformed", lambda t, s, o: envelope(good(), [{**t.sign(good())[0], "key_id": "../../etc"}]),
     UNREADABLE, "not a relocpy index (signatures.0.key_id"),
    ("too-many-signatures", lambda t, s, o: envelope(good(), t.sign(good()) * 17),
     UNREADABLE, "not a relocpy index (signatures"),
    ("extra-field-in-signature", lambda t, s, o: envelope(good(), [{**t.sign(good())[0], "algorithm": "none"}]),
     UNREADABLE, "not a relocpy index (signatures.0.algorithm: Extra inputs"),
    # --- the envelope itself ---------------------------------------------------------------------
    ("extra-top-level-field", lambda t, s, o: envelope(good(), t.sign(good()), unsigned_serial=99),
     UNREADABLE, "not a relocpy index (unsigned_serial: Extra inputs"),
    ("schema-version-2-detached", lambda t, s, o: good().replace(b'"schema_version":3', b'"schema_version":2'),
     UNREADABLE, "index schema version 2; this relocpy reads version 3 only"),
    ("schema-version-4", lambda t, s, o: envelope(good(), t.sign(good()), schema_version=4),
     UNREADABLE, "index schema version 4;"),
    ("schema-version-as-string", lambda t, s, o: envelope(good(), t.sign(good()), schema_version="3"),
     UNREADABLE, "index schema version '3';"),
    ("schema-version-missing", lambda t, s, o: json.dumps({"signed": good().decode(), "signatures": []}).encode(),
     UNREADABLE, "not a relocpy index (schema_version: Field required)"),
    ("signed-is-an-object", lambda t, s, o: envelope(good(), t.sign(good())).replace(
        json.dumps(good().decode()).encode(), good()), UNREADABLE, "not a relocpy index (signed: Input should be"),
    ("garbage-bytes", lambda t, s, o: bytes(range(256)) * 4,
     UNREADABLE, "not a relocpy index (top level: Invalid JSON"),
    ("empty-file", lambda t, s, o: b"", UNREADABLE, "not a relocpy index (top level: Invalid JSON"),
    ("json-array", lambda t, s, o: b"[1, 2, 3]", UNREADABLE, "not a relocpy index (top level: Input should be"),
    ("deep-nesting", lambda t, s, o: b"[" * 200_000, UNREADABLE, "not a relocpy index (top level: Invalid JSON"),
    ("nested-in-signed-field", lambda t, s, o: b'{"schema_version":3,"signed":' + b"[" * 200_000,
     UNREADABLE, "not a relocpy index"),
    # --- validly signed, but not an index this client may accept ----------------------------------
    ("signed-garbage", lambda t, s, o: sealed(b"not json at all", t), UNREADABLE, "not a relocpy index (top level"),
    ("signed-extra-field", lambda t, s, o: sealed(good()[:-1] + b',"mirror":"http://evil.invalid"}', t),
     UNREADABLE, "not a relocpy index (mirror: Extra inputs"),
    ("signed-payload-version-2", lambda t, s, o: sealed(flipped(good(), b'"schema_version":3', b'"schema_version":2'),
                                                        t), UNREADABLE, "not a relocpy index (schema_version"),
    ("signed-naive-datetimes", lambda t, s, o: sealed(flipped(flipped(good(), b'Z"', b'"'), b'Z"', b'"'), t),
     UNREADABLE, "not a relocpy index (generated: Input should have timezone info"),
    ("signed-serial-zero", lambda t, s, o: sealed(flipped(good(), b'"serial":5', b'"serial":0'), t),
     UNREADABLE, "not a relocpy index (serial: Input should be greater than or equal to 1"),
    ("signed-serial-huge", lambda t, s, o: sealed(flipped(good(), b'"serial":5', f'"serial":{MAX_SERIAL + 1}'.encode()),
                                                  t), UNREADABLE, "not a relocpy index (serial"),
    ("signed-expires-before-generated", lambda t, s, o: sealed(_expires_before_generated(), t),
     UNREADABLE, "expires is before generated"),
    ("signed-duplicate-names", lambda t, s, o: sealed(_duplicate_names(), t),
     UNREADABLE, "an artifact name is listed twice"),
    ("signed-bad-channel-name", lambda t, s, o: sealed(flipped(good(), b'"stable"', b'"Stable/.."'), t),
     UNREADABLE, "not a relocpy index (channel: String should match pattern"),
    ("signed-entry-version-not-a-version", lambda t, s, o: sealed(flipped(good(), b'"version":"3.99.1"',
                                                                          b'"version":"abc"'), t),
     UNREADABLE, "not a relocpy index (artifacts.0.key.version: Value error, 'abc' is not a Python version)"),
    ("signed-entry-version-unnormal", lambda t, s, o: sealed(flipped(good(), b'"version":"3.99.1"',
                                                                     b'"version":"3.99.01"'), t),
     UNREADABLE, "not a relocpy index (artifacts.0.key.version: Value error, '3.99.01': write it as '3.99.1')"),
    ("other-channel", lambda t, s, o: sealed(good(channel="nightly"), t),
     REFUSED, "is the index of channel 'nightly', not 'stable': refused"),
    ("expired", lambda t, s, o: sealed(good(generated=datetime.now(timezone.utc) - timedelta(days=3)), t),
     REFUSED, "index expired at"),
    ("lifetime-over-a-year", lambda t, s, o: sealed(good(lifetime=timedelta(days=366)), t),
     REFUSED, "is valid for 366 days, more than the 365 allowed"),
    ("lifetime-ten-years-backdated", lambda t, s, o: sealed(
        good(generated=datetime.now(timezone.utc) - timedelta(days=3000), lifetime=timedelta(days=3650)), t),
     REFUSED, "is valid for 3650 days, more than the 365 allowed"),
]


def _expires_before_generated() -> bytes:
    payload = json.loads(good())
    payload["expires"], payload["generated"] = payload["generated"], payload["expires"]
    return json.dumps(payload).encode()


def _duplicate_names() -> bytes:
    return json.dumps({**json.loads(good()), "artifacts": [json.loads(entry().model_dump_json())] * 2}).encode()


@pytest.mark.parametrize(("make", "code", "expect"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_index_is_refused_with_one_line(make, code, expect, signers, env, tmp_path):
    trusted, stranger, second = signers
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.json").write_bytes(make(trusted, stranger, second))
    result = run("index", "verify", str(site), "--trusted-key", trusted.public, "--trusted-key", second.public,
                 env=env)
    line = one_error_line(result)
    assert expect in line, line
    assert result.returncode == code, line
    assert not (tmp_path / "home" / "data" / "relocpy" / "state.json").exists()  # nothing recorded


def test_the_genuine_index_of_these_cases_is_accepted(signers, env, tmp_path):
    """The control: the same payload, untouched, verifies (so each refusal above is the forgery's)."""
    trusted, _, _ = signers
    (tmp_path / "index.json").write_bytes(sealed(good(), trusted))
    result = run("index", "verify", str(tmp_path / "index.json"), "--trusted-key", trusted.public, env=env)
    assert result.returncode == 0 and "channel stable serial 5" in result.stdout, result.stderr


def peak_rss_mib(argv: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float]:
    """Run argv in a fresh wrapper process, so that RUSAGE_CHILDREN is this command's alone."""
    wrapper = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
               "sys.stderr.write(r.stderr); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
               "sys.exit(r.returncode)")
    result = subprocess.run([sys.executable, "-c", wrapper, *argv], capture_output=True, text=True, env=env,
                            timeout=60)
    return result, int(result.stdout.strip().splitlines()[-1]) / 1024


@pytest.mark.parametrize("served", [False, True], ids=["file", "http"])
def test_huge_index_is_refused_in_bounded_memory(signers, env, tmp_path, served, file_server):
    """A 4 GiB index.json (sparse on disk) is refused after reading at most the 32 MiB limit."""
    trusted, _, _ = signers
    root = file_server.directory if served else tmp_path
    with (root / "index.json").open("wb") as handle:
        handle.truncate(4 << 30)
    location = f"{file_server.url}/index.json" if served else str(root / "index.json")
    if served:  # the test server reads a whole file into memory: serve a smaller one, still over the limit
        with (root / "index.json").open("r+b") as handle:
            handle.truncate(MAX_INDEX_BYTES + (8 << 20))
    result, peak = peak_rss_mib([sys.executable, "-m", "relocpy", "index", "verify", location,
                                 "--trusted-key", trusted.public], env)
    assert result.returncode == UNREADABLE and f"larger than {MAX_INDEX_BYTES} bytes; refusing" in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert peak < 64 + 2 * MAX_INDEX_BYTES / (1 << 20), f"peak RSS {peak:.0f} MiB"
    os.truncate(root / "index.json", 0)
