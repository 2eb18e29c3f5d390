"""The streaming inflater and the up-front member checks, without a server."""

import gzip
import tarfile

import pytest

from relocpy.errors import UnsafeArchiveError
from relocpy.unpack import StreamInflater, check_all, extract_all, gunzip
from support import member, tar_with

PAYLOAD = bytes(range(256)) * 4000


def fed(inflater: StreamInflater, data: bytes, step: int = 7000) -> None:
    for start in range(0, len(data), step):
        inflater.feed(data[start:start + step])


def test_stream_inflates_in_chunks_and_across_members():
    data = gzip.compress(PAYLOAD) + b"\0" * 8 + gzip.compress(b"tail")
    inflater = StreamInflater(limit=10 * len(PAYLOAD))
    fed(inflater, data)
    assert inflater.result(len(data)) == PAYLOAD + b"tail" == gunzip(data)


def test_restart_discards_earlier_bytes():
    data = gzip.compress(PAYLOAD)
    inflater = StreamInflater(limit=10 * len(PAYLOAD))
    fed(inflater, b"\x1f\x8bgarbage that is not deflate")
    inflater.restart()
    fed(inflater, data)
    assert inflater.result(len(data)) == PAYLOAD


@pytest.mark.parametrize("case", ["truncated", "corrupt", "over-limit", "wrong-size", "nothing-fed"])
def test_stream_gives_none_unless_clean(case):
    data = gzip.compress(PAYLOAD)
    inflater = StreamInflater(limit=len(PAYLOAD) // 2 if case == "over-limit" else 10 * len(PAYLOAD))
    body = {"truncated": data[:-100], "corrupt": data[:50] + b"\xff" * 50 + data[100:], "nothing-fed": b""}.get(case, data)
    fed(inflater, body)
    assert inflater.result(len(body) + (1 if case == "wrong-size" else 0)) is None


def members(*specs):
    out = []
    for name, kind, linkname in specs:
        info = tarfile.TarInfo(name)
        info.type, info.linkname = kind, linkname
        out.append(info)
    return out


def test_plan_orders_dirs_files_links():
    plan = check_all(members(("python/bin/python", tarfile.SYMTYPE, "python3"), ("python", tarfile.DIRTYPE, ""),
                             ("python/bin/python3", tarfile.REGTYPE, ""), ("python/lib", tarfile.DIRTYPE, "")))
    assert plan.dirs == ["python", "python/lib"]
    assert [m.name for m in plan.files] == ["python/bin/python3"]
    assert [m.name for m in plan.links] == ["python/bin/python"]


def test_dot_segments_do_not_hide_a_duplicate():
    with pytest.raises(UnsafeArchiveError, match="appears twice"):
        check_all(members(("python/x", tarfile.REGTYPE, ""), ("python/./x", tarfile.SYMTYPE, "y")))


def test_symlink_loop_refused():
    with pytest.raises(UnsafeArchiveError, match="points outside"):
        check_all(members(("python/a", tarfile.SYMTYPE, "b"), ("python/b", tarfile.SYMTYPE, "a")))


@pytest.mark.parametrize("data_filter", [True, False], ids=["data-filter", "before-3.11.4"])
def test_extract_all_with_and_without_tarfiles_data_filter(tmp_path, monkeypatch, data_filter):
    """Debian 12's Python 3.11.2 has no tarfile filters: extract_all checks every member itself."""
    if not data_filter:
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    good, bad = tmp_path / "good.tar.gz", tmp_path / "bad.tar.gz"
    tar_with(good, [member("python", tarfile.DIRTYPE), member("python/bin/python3", data=b"#!"),
                    member("python/bin/python", tarfile.SYMTYPE, linkname="python3")])
    tar_with(bad, [member("python", tarfile.DIRTYPE), member("python/escape", tarfile.SYMTYPE, linkname="../../etc")])
    extract_all(lambda: tarfile.open(good), tmp_path / "out")
    assert (tmp_path / "out/python/bin/python").read_bytes() == b"#!"
    with pytest.raises((UnsafeArchiveError, tarfile.TarError)):
        extract_all(lambda: tarfile.open(bad), tmp_path / "refused")
    assert not (tmp_path / "refused" / "python" / "escape").is_symlink()
