"""The streaming unpacker on well-formed archives: what it writes, and the
member checks it makes on the way. Hostile archives are in tests/hostile/."""

import gzip
import io
import os
import tarfile

import pytest

from relocpy.errors import UnsafeArchiveError
from relocpy.unpack import Checker, Gunzip, Limits, extract
from support import EPOCH, END, gz, member, regular, tar_bytes, zst

PAYLOAD = bytes(range(256)) * 4000


def drained(reader, step: int = 7000) -> bytes:
    parts = []
    while chunk := reader.read(step):
        assert len(chunk) <= step
        parts.append(chunk)
    return b"".join(parts)


def test_gunzip_reads_across_members_and_zero_padding_in_bounded_steps():
    data = gzip.compress(PAYLOAD) + b"\0" * 8 + gzip.compress(b"tail")
    assert drained(Gunzip(io.BytesIO(data))) == PAYLOAD + b"tail"


@pytest.mark.parametrize("case, error", [("truncated", EOFError), ("empty", EOFError), ("corrupt", Exception)])
def test_gunzip_refuses_a_stream_that_does_not_end_cleanly(case, error):
    data = gzip.compress(PAYLOAD)
    body = {"truncated": data[:-100], "empty": b"", "corrupt": data[:50] + b"\xff" * 50 + data[100:]}[case]
    with pytest.raises(error):
        drained(Gunzip(io.BytesIO(body)))


def test_limits_take_the_ratio_above_the_floor_and_below_the_absolute_cap():
    limits = Limits(ratio=10, floor=100, absolute=1000)
    assert [limits.inflated_bytes(n) for n in (1, 50, 200)] == [100, 500, 1000]


TREE = [
    member("python", tarfile.DIRTYPE, None),
    member("python/bin/python3", data=b"#!/bin/sh\n"),
    member("python/lib/" + "long-name-" * 20 + ".py", data=b"print(1)\n", mode=0o644),
    member("python/bin/python", tarfile.SYMTYPE, linkname="python3"),
    member("python/bin/python3.99", tarfile.LNKTYPE, linkname="python/bin/python3"),
    member("python/lib/empty", tarfile.DIRTYPE, None),
]


@pytest.mark.parametrize("format", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
@pytest.mark.parametrize("compress", ["gz", "zst", "zst-frames"])
def test_extract_writes_files_links_modes_and_mtimes(tmp_path, format, compress):
    data = tar_bytes(TREE, format)
    archive = tmp_path / "a.tar"
    archive.write_bytes({"gz": gz, "zst": zst, "zst-frames": lambda d: zst(d, frame=700, skippable=True)}[compress](data))
    root = extract(archive, tmp_path / "out")
    long_name = root / "lib" / ("long-name-" * 20 + ".py")
    assert long_name.read_bytes() == b"print(1)\n" and long_name.stat().st_mode & 0o777 == 0o644
    assert os.readlink(root / "bin" / "python") == "python3"
    assert os.path.samefile(root / "bin" / "python3.99", root / "bin" / "python3")
    assert os.access(root / "bin" / "python3", os.X_OK) and (root / "lib" / "empty").is_dir()
    assert long_name.stat().st_mtime == EPOCH  # .pyc files are checked against their source's mtime


def test_a_file_before_its_directory_entry_and_a_repeated_directory_are_fine(tmp_path):
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(gz(regular("python/deep/er/x", b"1") + regular("python/deep", kind=tarfile.DIRTYPE, data=b"")
                           + regular("python/deep", kind=tarfile.DIRTYPE, data=b"") + END))
    assert (extract(archive, tmp_path / "out") / "deep" / "er" / "x").read_bytes() == b"1"


def test_setuid_and_group_write_bits_are_dropped(tmp_path):
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(gz(tar_bytes([member("python/tool", data=b"x", mode=0o6777)])))
    assert (extract(archive, tmp_path / "out") / "tool").stat().st_mode & 0o7777 == 0o755


def info(name, kind=tarfile.REGTYPE, linkname=""):
    member = tarfile.TarInfo(name)
    member.type, member.linkname, member.mtime = kind, linkname, EPOCH
    return member


def test_links_are_made_last_whatever_their_place_in_the_archive():
    checker = Checker()
    for item in (info("python/bin/python", tarfile.SYMTYPE, "python3"), info("python", tarfile.DIRTYPE),
                 info("python/bin/python3")):
        checker.add(item)
    assert [str(link.path) for link in checker.links_to_make()] == ["python/bin/python"]


def test_dot_segments_do_not_hide_a_duplicate():
    checker = Checker()
    checker.add(info("python/x"))
    with pytest.raises(UnsafeArchiveError, match="appears twice"):
        checker.add(info("python/./x", tarfile.SYMTYPE, "y"))


def test_symlink_loop_refused():
    checker = Checker()
    checker.add(info("python/a", tarfile.SYMTYPE, "b"))
    checker.add(info("python/b", tarfile.SYMTYPE, "a"))
    with pytest.raises(UnsafeArchiveError, match="points outside"):
        checker.links_to_make()
