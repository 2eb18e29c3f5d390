"""Decompression bombs and oversized archives: refused after a bounded amount
of work, in bounded memory, with nothing installed.

The bombs are built from repeated compressed pieces (gzip members, zstd
frames), so a 1.5 GiB bomb costs a few milliseconds to make.
"""

import io
import os
import subprocess
import sys
import tarfile
import time

import pytest
import zstandard

from relocpy.errors import InstallError
from relocpy.install import install_archive
from relocpy.store import Store
from relocpy.unpack import LIMITS, Limits
from support import END, PEAK_RSS_KIB, SHELL_PYTHON, extended, gz, header, leftovers, pax_record, regular, zst

MiB = 1 << 20
BOMB = 1536 * MiB  # 1.5 GiB of zeros in one member


def bomb(compress: str, size: int = BOMB) -> bytes:
    """A tar holding `size` zeros as python/zeros, compressed piece by piece."""
    pack = {"gz": gz, "zst": zst, "zst-frames": lambda data: zst(data, skippable=True)}[compress]
    piece = pack(bytes(MiB))
    return pack(regular("python/bin/python3", SHELL_PYTHON) + header("python/zeros", size)) + piece * (size // MiB) + pack(END)


def archive_file(tmp_path, data: bytes, compress: str = "gz"):
    path = tmp_path / ("a.tar.gz" if compress == "gz" else "a.tar.zst")
    path.write_bytes(data)
    return path


def refused(tmp_path, data: bytes, compress: str = "gz", limits: Limits = LIMITS) -> str:
    """install_archive of data must fail fast and leave nothing: its message."""
    archive = archive_file(tmp_path, data, compress)
    versions = tmp_path / "versions"
    started = time.monotonic()
    with pytest.raises(InstallError) as failure:
        install_archive(archive, "cpython-3.99.1", {}, Store(versions), limits)
    assert time.monotonic() - started < 5
    assert leftovers(versions) == []
    return str(failure.value)


MEASURE = f"""
import sys, time
from pathlib import Path
from relocpy.errors import InstallError
from relocpy.install import install_archive
from relocpy.store import Store
from relocpy.unpack import Limits
started = time.monotonic()
try:
    install_archive(Path(sys.argv[1]), "cpython-3.99.1", {{}}, Store(Path(sys.argv[2])), Limits(**eval(sys.argv[3])))
    print("installed")
except InstallError as exc:
    print(exc)
print({PEAK_RSS_KIB} // 1024, time.monotonic() - started)
"""


def measured(archive, versions, **limits) -> tuple[str, int, float]:
    """install_archive in a child process: (its outcome, peak RSS in MiB, seconds)."""
    result = subprocess.run([sys.executable, "-c", MEASURE, str(archive), str(versions), repr(limits)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    outcome, figures = result.stdout.strip().splitlines()
    peak, seconds = figures.split()
    return outcome, int(peak), float(seconds)


@pytest.mark.parametrize("compress", ["gz", "zst", "zst-frames"])
def test_a_1_5_gib_bomb_is_refused_in_bounded_memory_and_time(tmp_path, compress):
    archive = archive_file(tmp_path, bomb(compress), compress)
    outcome, peak, seconds = measured(archive, tmp_path / "versions")
    limit = LIMITS.inflated_bytes(archive.stat().st_size)
    assert outcome == f"{archive.name} inflates to more than {limit} bytes (a decompression bomb?); refusing the archive"
    assert limit < 64 * MiB and peak < 100 and seconds < 10, (peak, seconds)
    assert leftovers(tmp_path / "versions") == []


def test_memory_does_not_grow_with_the_archive(tmp_path):
    """256 MiB inflated and written, allowed by generous limits: memory stays that of a small archive."""
    archive = archive_file(tmp_path, bomb("gz", 256 * MiB))
    outcome, peak, _ = measured(archive, tmp_path / "versions", ratio=10**6)
    assert outcome == "installed" and peak < 100, peak
    assert os.path.getsize(tmp_path / "versions" / "cpython-3.99.1" / "zeros") == 256 * MiB


@pytest.mark.parametrize("compress", ["gz", "zst", "zst-frames"])
def test_a_small_bomb_stops_at_the_floor(tmp_path, compress):
    data = bomb(compress, 8 * MiB)
    assert refused(tmp_path, data, compress) == (
        f"a.tar.{'gz' if compress == 'gz' else 'zst'} inflates to more than {MiB} bytes (a decompression bomb?); "
        "refusing the archive")


@pytest.mark.parametrize("compress", ["gz", "zst"])
def test_the_absolute_cap_holds_whatever_the_ratio(tmp_path, compress):
    noise = os.urandom(256 * 1024)  # does not compress: the ratio alone would allow it
    data = {"gz": gz, "zst": zst}[compress](regular("python/noise", noise) + END)
    message = refused(tmp_path, data, compress, Limits(absolute=100_000))
    assert message.endswith("inflates to more than 100000 bytes (a decompression bomb?); refusing the archive")


def test_too_many_members(tmp_path):
    data = gz(b"".join(regular(f"python/f{i}") for i in range(4)) + END)
    assert refused(tmp_path, data, limits=Limits(members=3)) == "a.tar.gz has more than 3 members; refusing the archive"


@pytest.mark.parametrize("kind", [tarfile.XHDTYPE, tarfile.GNUTYPE_LONGNAME])
def test_an_oversized_extended_header(tmp_path, kind):
    records = pax_record("comment", "x" * 5000) if kind == tarfile.XHDTYPE else b"python/" + b"x" * 5000 + b"\0"
    data = gz(extended(records, kind) + regular("python/x") + END)
    assert refused(tmp_path, data, limits=Limits(extended_header=4096)) == (
        f"a.tar.gz: an extended tar header of {len(records)} bytes (at most 4096); refusing the archive")


def test_a_zstd_frame_asking_for_a_huge_window(tmp_path):
    """The window is memory the decoder must hold: 128 MiB asked for, refused."""
    out = io.BytesIO()
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=27)
    with zstandard.ZstdCompressor(compression_params=params).stream_writer(out, closefd=False) as writer:
        writer.write(regular("python/bin/python3", SHELL_PYTHON) + END)
    assert refused(tmp_path, out.getvalue(), "zst") == (
        "a.tar.zst: cannot unpack: zstd decompress error: Frame requires too much memory for decoding")
