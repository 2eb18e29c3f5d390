"""Corrupt, truncated and odd tar headers: each refused with its own message,
nothing installed. Archives are written block by block, so each case holds
exactly the oddity it names."""

import tarfile
import time

import pytest

from relocpy.errors import InstallError
from relocpy.install import install_archive
from relocpy.store import Store
from support import END, SHELL_PYTHON, blocks, extended, gz, header, leftovers, pax_record, regular, zst

PYTHON = regular("python/bin/python3", SHELL_PYTHON)
B = tarfile.BLOCKSIZE


def refused(tmp_path, tar: bytes, compress=gz, name: str = "a.tar.gz") -> str:
    archive = tmp_path / name
    archive.write_bytes(compress(tar))
    versions = tmp_path / "versions"
    started = time.monotonic()
    with pytest.raises(InstallError) as failure:
        install_archive(archive, "cpython-3.99.1", {}, Store(versions))
    assert time.monotonic() - started < 5
    assert leftovers(versions) == []
    return str(failure.value)


def bad_checksum(block: bytes) -> bytes:
    return block[:148] + b"0000000\0" + block[156:]


def members(n: int) -> list[bytes]:
    return [regular(f"python/lib/m{i}.py", b"pass\n") for i in range(n)]


@pytest.mark.parametrize("where", ["start", "middle", "last"])
def test_a_corrupt_header_anywhere_refuses_the_archive(tmp_path, where):
    """A bad header mid-archive used to end the member list early and install what came before."""
    parts = [PYTHON, *members(4)]
    index = {"start": 0, "middle": 2, "last": 4}[where]
    offset = sum(len(p) for p in parts[:index])
    parts[index] = bad_checksum(parts[index][:B]) + parts[index][B:]
    assert refused(tmp_path, b"".join(parts) + END) == (
        f"a.tar.gz: corrupt tar header at byte {offset} (bad checksum); refusing the archive")


def test_a_header_with_a_number_that_is_not_octal(tmp_path):
    block = bytearray(header("python/x", 1))
    block[124:136] = b"9999zz99999\0"  # size
    block[148:156] = b"%06o\0 " % (sum(block[:148]) + 256 + sum(block[156:]))
    assert refused(tmp_path, PYTHON + bytes(block) + blocks(b"x") + END) == (
        f"a.tar.gz: corrupt tar header at byte {len(PYTHON)} (invalid header); refusing the archive")


def test_no_end_of_archive_marker(tmp_path):
    tar = PYTHON + b"".join(members(2))
    assert refused(tmp_path, tar) == (
        f"a.tar.gz: the tar ends at byte {len(tar)} without its end-of-archive marker (truncated); refusing the archive")


def test_cut_inside_a_header(tmp_path):
    tar = PYTHON + regular("python/x")[:300]
    assert refused(tmp_path, tar) == (
        f"a.tar.gz: the tar ends at byte {len(PYTHON)} without its end-of-archive marker (truncated); "
        "refusing the archive")


def test_cut_inside_a_member(tmp_path):
    tar = PYTHON + header("python/big", 10_000) + b"y" * 3000
    assert refused(tmp_path, tar) == "a.tar.gz: the tar ends inside 'python/big' (truncated); refusing the archive"


def test_cut_inside_an_extended_header(tmp_path):
    tar = PYTHON + extended(pax_record("path", "python/" + "x" * 900))[:B + 100]
    assert refused(tmp_path, tar) == "a.tar.gz: the tar ends inside an extended header (truncated); refusing the archive"


@pytest.mark.parametrize("after", ["members", "junk"])
def test_anything_but_zeros_after_the_end_marker(tmp_path, after):
    """A zero block mid-archive ends it: members hidden after it are not silently dropped."""
    tail = regular("python/hidden") if after == "members" else b"\x01" * 7
    assert refused(tmp_path, PYTHON + bytes(B) + tail + END) == (
        "a.tar.gz: data after the tar's end-of-archive marker; refusing the archive")


def test_an_extended_header_describing_nothing(tmp_path):
    assert refused(tmp_path, PYTHON + extended(pax_record("path", "python/x")) + END) == (
        "a.tar.gz: an extended header at the end of the tar describes no member; refusing the archive")


def test_a_negative_size_in_a_header(tmp_path):
    block = bytearray(header("python/x", 0))
    block[124:136] = b"\xff" * 12  # GNU base-256: -1
    block[148:156] = b"%06o\0 " % (sum(block[:148]) + 256 + sum(block[156:]))
    assert refused(tmp_path, PYTHON + bytes(block) + END) == (
        f"a.tar.gz: tar header at byte {len(PYTHON)} has a negative size; refusing the archive")


@pytest.mark.parametrize("mtime", ["nan", "inf", "-inf", "1e300", "-1", "9000000000"])
def test_pax_mtimes_out_of_range_or_not_finite(tmp_path, mtime):
    tar = PYTHON + extended(pax_record("mtime", mtime)) + regular("python/x") + END
    assert refused(tmp_path, tar) == (
        f"archive member 'python/x' has an impossible mtime ({float(mtime)}); refusing the archive")


@pytest.mark.parametrize("field, value", [("mtime", "abc"), ("size", "-"), ("size", "1e3")])
def test_pax_numbers_that_are_not_numbers(tmp_path, field, value):
    tar = PYTHON + extended(pax_record(field, value)) + regular("python/x") + END
    assert refused(tmp_path, tar) == f"a.tar.gz: pax {field} {value!r} is not a number; refusing the archive"


def test_a_pax_size_that_is_negative(tmp_path):
    tar = PYTHON + extended(pax_record("size", "-512")) + regular("python/x") + END
    assert refused(tmp_path, tar) == (
        f"a.tar.gz: tar header at byte {len(PYTHON) + 2 * B} has a negative size; refusing the archive")


@pytest.mark.parametrize("records", [b"99 path=python/x\n", b"12 pathpython\n", b"x path=python/x\n", b"0 =\n"])
def test_malformed_pax_records(tmp_path, records):
    tar = PYTHON + extended(records) + regular("python/y") + END
    assert refused(tmp_path, tar) == (
        "a.tar.gz: malformed pax record at byte 0 of an extended header; refusing the archive")


def test_a_pax_path_with_a_nul_byte(tmp_path):
    tar = PYTHON + extended(pax_record("path", "python/x\0y")) + regular("python/z") + END
    assert refused(tmp_path, tar) == "archive member 'python/x\\x00y' has a NUL byte in its name; refusing the archive"


@pytest.mark.parametrize("path, expect", [
    ("python/../../x", "archive member 'python/../../x' contains '..'"),
    ("/etc/cron.d/x", "archive member '/etc/cron.d/x' is an absolute path"),
    ("elsewhere/x", "archive member 'elsewhere/x' is outside python/"),
])
def test_a_pax_path_that_leaves_the_tree(tmp_path, path, expect):
    tar = PYTHON + extended(pax_record("path", path)) + regular("python/innocent") + END
    assert refused(tmp_path, tar) == f"{expect}; refusing the archive"


def test_a_gnu_long_name_that_leaves_the_tree(tmp_path):
    tar = PYTHON + extended(b"python/" + b"../" * 40 + b"x\0", tarfile.GNUTYPE_LONGNAME) + regular("python/y") + END
    assert refused(tmp_path, tar).endswith("contains '..'; refusing the archive")


def test_a_pax_linkpath_that_leaves_the_tree(tmp_path):
    link = header("python/l", 0, tarfile.SYMTYPE, linkname="ok")
    tar = PYTHON + extended(pax_record("linkpath", "/etc/shadow")) + link + END
    assert refused(tmp_path, tar) == "symlink 'python/l' -> '/etc/shadow' points outside the archive; refusing the archive"


def test_a_global_pax_header(tmp_path):
    tar = PYTHON + extended(pax_record("path", "python/x"), tarfile.XGLTYPE) + regular("python/y") + END
    assert refused(tmp_path, tar) == "archive member '././@PaxHeader' has an unsupported type; refusing the archive"


@pytest.mark.parametrize("key", ["GNU.sparse.major", "GNU.sparse.map", "GNU.sparse.size"])
def test_pax_sparse_files(tmp_path, key):
    tar = PYTHON + extended(pax_record(key, "1")) + regular("python/y") + END
    assert refused(tmp_path, tar) == f"a.tar.gz: a sparse file (pax {key}); refusing the archive"


def test_an_old_gnu_sparse_member(tmp_path):
    tar = PYTHON + header("python/s", 0, tarfile.GNUTYPE_SPARSE) + END
    assert refused(tmp_path, tar) == "archive member 'python/s' has an unsupported type; refusing the archive"


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.DIRTYPE, tarfile.LNKTYPE])
def test_a_link_or_directory_carrying_data(tmp_path, kind):
    """Its data would otherwise be read as the next headers."""
    tar = PYTHON + header("python/odd", B, kind, linkname="python/bin/python3") + regular("python/inner") + END
    assert refused(tmp_path, tar) == "archive member 'python/odd' is a link or directory with data; refusing the archive"


@pytest.mark.parametrize("compress, name, expect", [
    (lambda tar: gz(tar)[:-20], "a.tar.gz", "a.tar.gz: cannot unpack: compressed data ends early"),
    (lambda tar: gz(tar) + b"garbage!", "a.tar.gz", "a.tar.gz: cannot unpack: "),
    (lambda tar: gz(tar)[:40] + bytes(b ^ 0x55 for b in gz(tar)[40:80]) + gz(tar)[80:], "a.tar.gz", "a.tar.gz: cannot unpack: "),
    (lambda tar: zst(tar) + b"garbage!", "a.tar.zst", "a.tar.zst: cannot unpack: zstd decompress error: Unknown frame descriptor"),
    (lambda tar: b"", "a.tar.gz", "a.tar.gz: cannot unpack: neither gzip nor zstd"),
    (lambda tar: tar, "a.tar.gz", "a.tar.gz: cannot unpack: neither gzip nor zstd"),
    (lambda tar: b"BZh91AY&SY" + tar, "a.tar.gz", "a.tar.gz: cannot unpack: neither gzip nor zstd"),
])
def test_a_compressed_stream_that_is_not_clean(tmp_path, compress, name, expect):
    tar = PYTHON + b"".join(members(30)) + END
    assert refused(tmp_path, tar, compress, name).startswith(expect)


def test_a_zstd_stream_cut_short_is_caught_by_the_tar_end(tmp_path):
    """zstd's stream reader ends quietly at a cut; the missing end-of-archive marker does not."""
    tar = PYTHON + b"".join(members(30)) + END
    message = refused(tmp_path, tar, lambda t: zst(t, frame=2048)[:-300], "a.tar.zst")
    assert message.startswith("a.tar.zst: the tar ends") and message.endswith("(truncated); refusing the archive")
