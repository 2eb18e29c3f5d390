"""Hostile step caches: an entry's output is checked against the digest its
completion marker recorded when the step made it.

A tree changed since (a file edited, cut, added, removed, re-moded, linked,
a restored cache missing half of it) is discarded with one warning and made
again; a marker that is not one makes the entry an unfinished attempt. The
limit is tested too: the digest lives in the cache, so someone who rewrites
both the output and its marker is not caught (docs/ci.md: release builds
restore no step tree).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from relocpy.hashing import tree_sha256
from relocpy.runners.native import NativeRunner
from relocpy.steps import COMPLETE_MARKER, PythonCall, Step, StepContext, StepDirs, run_step, step_key


def context(tmp_path: Path) -> StepContext:
    return StepContext(cache_dir=tmp_path / "cache", work_dir=tmp_path / "cache" / "work", runner=NativeRunner(),
                       toolchain={}, jobs=1, source_date_epoch=1700000000)


def make_tree(out: Path) -> None:
    """A prefix like a dependency's: a library, a script, a header, a link."""
    (out / "lib").mkdir()
    (out / "lib" / "libz.a").write_bytes(b"\x7fELF static archive" * 100)
    (out / "lib" / "libz.so").symlink_to("libz.a")
    (out / "bin").mkdir()
    (out / "bin" / "tool").write_text("#!/bin/sh\necho made\n")
    (out / "bin" / "tool").chmod(0o755)
    (out / "include").mkdir()
    (out / "include" / "zlib.h").write_text("#define ZLIB 1\n")


def counted_step(calls: list[str]) -> Step:
    def run(dirs: StepDirs) -> None:
        calls.append("made")
        make_tree(dirs.output)

    return Step(kind="deps", name="zlib-1.3.1", title="build zlib 1.3.1", inputs={"sha256": "0" * 64},
                run=PythonCall(run, code="v1"))


def replace(path: Path, content: bytes) -> None:
    path.unlink()
    path.write_bytes(content)


def swap_for_link(path: Path) -> None:
    copy = path.parent.parent.parent / "identical"
    shutil.copytree(path, copy, symlinks=True)
    shutil.rmtree(path)
    path.symlink_to(copy)


TAMPERING: dict[str, Callable[[Path], object]] = {
    "a file's bytes changed, same size": lambda out: replace(out / "include" / "zlib.h", b"#define ZLIB 2\n"),
    "a file cut short": lambda out: replace(out / "lib" / "libz.a", b"\x7fELF"),
    "a file emptied": lambda out: replace(out / "include" / "zlib.h", b""),
    "a file added": lambda out: (out / "lib" / "libevil.a").write_bytes(b"planted"),
    "a file removed": lambda out: (out / "include" / "zlib.h").unlink(),
    "a file renamed": lambda out: (out / "include" / "zlib.h").rename(out / "include" / "zlib2.h"),
    "an empty directory added": lambda out: (out / "share").mkdir(),
    "the executable bit dropped": lambda out: (out / "bin" / "tool").chmod(0o644),
    "a file made setuid": lambda out: (out / "bin" / "tool").chmod(0o4755),
    "a link pointed elsewhere": lambda out: ((out / "lib" / "libz.so").unlink(),
                                             (out / "lib" / "libz.so").symlink_to("/etc/passwd")),
    "a link replaced by the file it named": lambda out: ((out / "lib" / "libz.so").unlink(),
                                                         shutil.copy(out / "lib" / "libz.a", out / "lib" / "libz.so")),
    "a file replaced by a link to the same bytes": lambda out: (
        shutil.copy(out / "include" / "zlib.h", out.parent / "zlib.h"), (out / "include" / "zlib.h").unlink(),
        (out / "include" / "zlib.h").symlink_to(out.parent / "zlib.h")),
    "a fifo added": lambda out: os.mkfifo(out / "lib" / "pipe"),
    "half the tree missing, as a restore cut short": lambda out: shutil.rmtree(out / "lib"),
    "the whole output removed": lambda out: shutil.rmtree(out),
    "the output replaced by a link to an identical copy": swap_for_link,
}


@pytest.mark.parametrize("case", TAMPERING, ids=list(TAMPERING))
def test_a_changed_output_is_discarded_and_made_again_with_a_warning(case, tmp_path, capsys):
    calls: list[str] = []
    ctx = context(tmp_path)
    first = run_step(counted_step(calls), ctx)
    made = tree_sha256(first.output)
    TAMPERING[case](first.output)
    capsys.readouterr()
    again = run_step(counted_step(calls), ctx)
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    entry = first.output.parent
    assert warnings == [f"warning: deps/{entry.name}: the cached output is not what the step made; "
                        "discarded, making it again"]
    assert calls == ["made", "made"] and not again.cached
    assert not again.output.is_symlink() and tree_sha256(again.output) == made
    assert json.loads((entry / COMPLETE_MARKER).read_text())["output_sha256"] == made


MARKERS: dict[str, Callable[[Path], object]] = {
    "a marker of the previous format (no digest)": lambda marker: marker.write_text(
        json.dumps({k: v for k, v in json.loads(marker.read_text()).items() if k != "output_sha256"})),
    "a marker that is not JSON": lambda marker: marker.write_text("{complete"),
    "a marker that is a JSON list": lambda marker: marker.write_text("[]"),
    "a marker with a duration that is not a number": lambda marker: marker.write_text(
        json.dumps({**json.loads(marker.read_text()), "duration": "long"})),
    "a marker of another key": lambda marker: marker.write_text(
        json.dumps({**json.loads(marker.read_text()), "key": "f" * 64})),
    "a marker that is a directory": lambda marker: (marker.unlink(), marker.mkdir()),
    "a marker that is not UTF-8": lambda marker: marker.write_bytes(b"\xff\xfe{"),
}


@pytest.mark.parametrize("case", MARKERS, ids=list(MARKERS))
def test_an_entry_whose_marker_is_not_one_is_made_again(case, tmp_path, capsys):
    calls: list[str] = []
    ctx = context(tmp_path)
    first = run_step(counted_step(calls), ctx)
    MARKERS[case](first.output.parent / COMPLETE_MARKER)
    again = run_step(counted_step(calls), ctx)
    assert calls == ["made", "made"] and not again.cached
    assert "Traceback" not in capsys.readouterr().err
    marker = json.loads((first.output.parent / COMPLETE_MARKER).read_text())
    assert marker["key"] == again.key and marker["output_sha256"] == tree_sha256(again.output)


def test_an_untouched_entry_is_reused_without_a_word(tmp_path, capsys):
    calls: list[str] = []
    ctx = context(tmp_path)
    first = run_step(counted_step(calls), ctx)
    capsys.readouterr()
    again = run_step(counted_step(calls), ctx)
    assert calls == ["made"] and again.cached and "warning" not in capsys.readouterr().err
    marker = json.loads((first.output.parent / COMPLETE_MARKER).read_text())
    assert marker == {"name": "zlib-1.3.1", "key": first.key, "duration": marker["duration"],
                      "output_sha256": tree_sha256(first.output), "made_in": str(first.made_in)}
    assert again.made_in == first.made_in == ctx.work_dir / "zlib-1.3.1"


def test_the_limit_someone_who_rewrites_output_and_marker_is_not_caught(tmp_path):
    """What docs/ci.md says: the digest is kept in the cache it checks. A
    forged entry with a matching marker is reused; so a release restores no
    step tree."""
    calls: list[str] = []
    ctx = context(tmp_path)
    first = run_step(counted_step(calls), ctx)
    replace(first.output / "include" / "zlib.h", b"#define FORGED 1\n")
    marker = first.output.parent / COMPLETE_MARKER
    marker.write_text(json.dumps({**json.loads(marker.read_text()), "output_sha256": tree_sha256(first.output)}))
    again = run_step(counted_step(calls), ctx)
    assert calls == ["made"] and again.cached
    assert (again.output / "include" / "zlib.h").read_bytes() == b"#define FORGED 1\n"


# --- the digest itself -------------------------------------------------------------------------------


def test_the_tree_digest_does_not_depend_on_creation_order_or_times(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    make_tree(one)
    for name in ("include", "bin", "lib"):  # another order, other times
        (two / name).mkdir()
    (two / "include" / "zlib.h").write_text("#define ZLIB 1\n")
    (two / "lib" / "libz.so").symlink_to("libz.a")
    (two / "lib" / "libz.a").write_bytes(b"\x7fELF static archive" * 100)
    (two / "bin" / "tool").write_text("#!/bin/sh\necho made\n")
    (two / "bin" / "tool").chmod(0o755)
    os.utime(two / "include" / "zlib.h", (0, 0))
    assert tree_sha256(one) == tree_sha256(two)


def test_the_tree_digest_tells_a_link_from_a_file_naming_the_same(tmp_path):
    """A link's target and a file's content are different fields, not just different bytes."""
    as_link, as_file = tmp_path / "link", tmp_path / "file"
    as_link.mkdir()
    as_file.mkdir()
    (as_link / "x").symlink_to("abc")
    (as_file / "x").write_text("abc")
    assert tree_sha256(as_link) != tree_sha256(as_file)


def test_a_step_key_is_not_changed_by_the_digest(tmp_path):
    """The digest is what the step made, not what it is made from: the key stays the key."""
    calls: list[str] = []
    ctx = context(tmp_path)
    key = step_key(counted_step(calls), ctx)
    assert run_step(counted_step(calls), ctx).key == key
