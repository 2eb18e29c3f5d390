"""Hostile source caches: a cached file is hashed again every time it is used.

A file swapped, cut, grown, linked or replaced in `<cache>/sources/` is never
built from: it is discarded with a warning and fetched again, or, with
nowhere else to get it, the fetch ends in one `relocpy: error:` line naming
it (exit 2) and nothing else in the cache changes. Each case runs the real
`relocpy fetch` on a real plan's sources over a cache filled from the mirror.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from cli_outcome import client_env, refused, run, snapshot
from relocpy.errors import HashMismatchError
from relocpy.fetch import cache_path, fetch_all
from relocpy.models import SourceFile
from relocpy.plan import resolve_plan
from relocpy.recipes import load_recipes
from relocpy.settings import FetchSettings

EXIT_SOURCE = 2
PLAN = ("--python", "3.13.15", "--target", "x86_64-unknown-linux-gnu", "--variant", "noopt")
TAMPERED = "bzip2"  # one candidate file, 810 kB


def plan_sources() -> list[tuple[str, list[SourceFile]]]:
    return resolve_plan(load_recipes(), "3.13.15", "x86_64-unknown-linux-gnu", "noopt").all_sources()


@pytest.fixture(scope="module")
def warm(tmp_path_factory, sources_mirror) -> Path:
    """A cache holding every source of the plan, fetched once from the mirror."""
    cache = tmp_path_factory.mktemp("warm") / "cache"
    fetch_all(plan_sources(), FetchSettings(cache_dir=cache, mirrors=[str(sources_mirror)], offline=True,
                                            progress=False))
    return cache


@pytest.fixture
def cache(warm, tmp_path) -> Path:
    """This test's copy of the warm cache, hard-linked: a case replaces a file, never edits it in place."""
    copy = tmp_path / "cache"
    shutil.copytree(warm, copy, copy_function=os.link)
    return copy


@pytest.fixture
def pinned() -> SourceFile:
    return dict(plan_sources())[TAMPERED][0]


def fetch(cache: Path, home: Path, *mirror: str):
    flags = ["--mirror", mirror[0]] if mirror else []
    return run("fetch", *PLAN, "--offline", "--cache-dir", str(cache), *flags, env=client_env(home))


def replace_with(content: bytes) -> Callable[[Path], None]:
    def apply(path: Path) -> None:
        path.unlink()
        path.write_bytes(content)
    return apply


def good_bytes(sources_mirror: Path, pinned: SourceFile) -> bytes:
    return (sources_mirror / pinned.file).read_bytes()


# What a cache can hold where the pinned file belongs, and how the fetch says it.
SWAPS: dict[str, tuple[Callable[[Path, bytes], None], str]] = {
    "another file of the same size": (
        lambda path, good: replace_with(bytes(len(good)))(path), "sha256 {actual}, expected {pin}; the cached copy "
        "was discarded"),
    "the file cut short": (
        lambda path, good: replace_with(good[:-1])(path), "sha256 {actual}, expected {pin}; the cached copy was "
        "discarded"),
    "an empty file": (
        lambda path, good: replace_with(b"")(path), "sha256 {actual}, expected {pin}; the cached copy was discarded"),
    "the file with a byte more": (
        lambda path, good: replace_with(good + b"\n")(path), "sha256 {actual}, expected {pin}; the cached copy was "
        "discarded"),
    "the file with one bit flipped": (
        lambda path, good: replace_with(bytes([good[0] ^ 1]) + good[1:])(path), "sha256 {actual}, expected {pin}; "
        "the cached copy was discarded"),
    "a link to a good copy elsewhere": (
        lambda path, good: (path.unlink(), (path.parent.parent / "elsewhere").write_bytes(good),
                            path.symlink_to(path.parent.parent / "elsewhere")),
        "a symbolic link where a file belongs; discarded"),
    "a link to /etc/passwd": (
        lambda path, good: (path.unlink(), path.symlink_to("/etc/passwd")),
        "a symbolic link where a file belongs; discarded"),
    "a dangling link": (
        lambda path, good: (path.unlink(), path.symlink_to(path.parent / "gone")),
        "a symbolic link where a file belongs; discarded"),
    "a directory": (
        lambda path, good: (path.unlink(), path.mkdir(), (path / "inside").write_bytes(good)),
        "a directory where a file belongs; discarded"),
    "a fifo (which must not hang the fetch)": (
        lambda path, good: (path.unlink(), os.mkfifo(path)),
        "not a regular file where a file belongs; discarded"),
}


def what_is_there(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() and not path.is_symlink() else ""


@pytest.mark.parametrize("case", SWAPS, ids=list(SWAPS))
def test_offline_a_bad_cached_source_is_one_line_and_discarded(case, cache, pinned, sources_mirror, tmp_path):
    swap, reason = SWAPS[case]
    path = cache_path(FetchSettings(cache_dir=cache), pinned)
    swap(path, good_bytes(sources_mirror, pinned))
    actual = what_is_there(path)
    home = tmp_path / "home"
    before = snapshot(cache, home)
    result = fetch(cache, home)
    expected = (f"relocpy: error: {TAMPERED}: {pinned.file} from {path}: "
                + reason.format(actual=actual, pin=pinned.sha256))
    assert refused(result, EXIT_SOURCE) == expected
    assert not os.path.lexists(path)
    removed = {p for p in before if p == str(path) or p.startswith(f"{path}/")}
    assert snapshot(cache, home) == {p: v for p, v in before.items() if p not in removed}  # the rest as it was


@pytest.mark.parametrize("case", SWAPS, ids=list(SWAPS))
def test_with_a_mirror_a_bad_cached_source_is_fetched_again_with_a_warning(case, cache, pinned, sources_mirror,
                                                                            tmp_path):
    swap, reason = SWAPS[case]
    path = cache_path(FetchSettings(cache_dir=cache), pinned)
    swap(path, good_bytes(sources_mirror, pinned))
    actual = what_is_there(path)
    result = fetch(cache, tmp_path / "home", str(sources_mirror))
    assert result.returncode == 0, result.stderr
    warning = f"warning: {TAMPERED}: refused {path}: " + reason.format(actual=actual, pin=pinned.sha256)
    assert warning in result.stderr.splitlines(), result.stderr
    assert f"{TAMPERED:<10} {pinned.file}  ok  ({sources_mirror / pinned.file})" in result.stderr
    assert path.is_file() and not path.is_symlink() and what_is_there(path) == pinned.sha256


def test_an_untouched_cache_is_used_and_left_as_it_is(cache, tmp_path):
    home = tmp_path / "home"
    before = snapshot(cache, home)
    result = fetch(cache, home)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("ok  (cache)") == len(plan_sources()) and "warning" not in result.stderr
    assert snapshot(cache, home) == before


def test_a_partial_file_a_killed_fetch_left_is_removed_by_the_next_fetch(cache, pinned, tmp_path):
    """A partial file is locked while its fetch runs: an unlocked one was left
    by a fetch that died and goes; a locked one is another fetch's, and stays."""
    directory = cache_path(FetchSettings(cache_dir=cache), pinned).parent
    abandoned = directory / f".{pinned.file}.0123456789abcdef0123456789abcdef.part"
    live = directory / f".{pinned.file}.fedcba9876543210fedcba9876543210.part"
    for leftover in (abandoned, live):
        leftover.write_bytes(b"half")
    with live.open("rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        result = fetch(cache, tmp_path / "home")
    assert result.returncode == 0, result.stderr
    assert not abandoned.exists() and live.read_bytes() == b"half"


# --- the library: alternates, and the message it raises --------------------------------------------


def test_a_bad_first_alternate_does_not_hide_a_good_second_one(tmp_path):
    good, other = b"the repack" * 1000, b"the release" * 1000
    first = SourceFile(file="a.tar.gz", sha256=hashlib.sha256(other).hexdigest())
    second = SourceFile(file="a.orig.tar.gz", sha256=hashlib.sha256(good).hexdigest(), origin="repack")
    settings = FetchSettings(cache_dir=tmp_path / "cache", offline=True, progress=False)
    for source, data in ((first, b"swapped"), (second, good)):
        cache_path(settings, source).parent.mkdir(parents=True)
        cache_path(settings, source).write_bytes(data)
    [got] = fetch_all([("a", [first, second])], settings)
    assert (got.source, got.location, got.path.read_bytes()) == (second, "cache", good)
    assert not cache_path(settings, first).exists()


def test_the_library_raises_the_mismatch_it_found_in_the_cache(tmp_path):
    pinned_bytes = b"pinned" * 100
    source = SourceFile(file="a.tar.gz", sha256=hashlib.sha256(pinned_bytes).hexdigest())
    settings = FetchSettings(cache_dir=tmp_path / "cache", offline=True, progress=False)
    path = cache_path(settings, source)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"swapped")
    with pytest.raises(HashMismatchError) as raised:
        fetch_all([("a", [source])], settings)
    assert str(raised.value) == (f"a: a.tar.gz from {path}: sha256 {hashlib.sha256(b'swapped').hexdigest()}, "
                                 f"expected {source.sha256}; the cached copy was discarded")
    assert sorted(p.name for p in path.parent.iterdir()) == []
