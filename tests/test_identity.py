"""One structured artifact identity: the key (implementation, version,
os/arch/libc/floor, variant, flavor) that build, index, install and the uv
export compare field by field; the file name and the tag only spell it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from relocpy.errors import InstallError
from relocpy.index import Index, IndexEntry
from relocpy.install import Request, choose
from relocpy.models import ArtifactKey, Platform

GLIBC_236 = Platform(os="linux", arch="x86_64", libc="glibc", floor="2.36")


@pytest.mark.parametrize("tag, parts", [
    ("manylinux_2_17_x86_64", ("linux", "x86_64", "glibc", "2.17")),
    ("manylinux_2_28_aarch64", ("linux", "aarch64", "glibc", "2.28")),
    ("musllinux_1_2_x86_64", ("linux", "x86_64", "musl", "1.2")),
    ("macosx_11_0_arm64", ("macos", "aarch64", "none", "11.0")),
    ("win_amd64", ("windows", "x86_64", "none", "")),
])
def test_a_tag_is_read_into_parts_and_spelled_back(tag, parts):
    platform = Platform.from_tag(tag)
    assert (platform.os, platform.arch, platform.libc, platform.floor) == parts
    assert platform.tag == tag


def test_runs_on_compares_libc_arch_and_floor_not_strings():
    assert Platform.from_tag("manylinux_2_17_x86_64").runs_on(GLIBC_236)
    assert Platform.from_tag("manylinux_2_36_x86_64").runs_on(GLIBC_236)
    assert not Platform.from_tag("manylinux_2_39_x86_64").runs_on(GLIBC_236)
    assert not Platform.from_tag("manylinux_2_17_aarch64").runs_on(GLIBC_236)
    assert not Platform.from_tag("musllinux_1_2_x86_64").runs_on(GLIBC_236)
    # 2.9 < 2.17 as versions, not as strings
    assert Platform.from_tag("manylinux_2_9_x86_64").runs_on(Platform.from_tag("manylinux_2_17_x86_64"))


def entry(tag: str, version: str = "3.13.15", flavor: str = "install_only_stripped", build: str = "20261124") -> IndexEntry:
    key = ArtifactKey(version=version, build_tag=build, platform_tag=tag, flavor=flavor)
    return IndexEntry(name=key.filename, key=key, url=key.filename, sha256="a" * 64, size=1, abi_tag="cp313",
                      build_options="lto", metadata_url=key.filename + ".json", metadata_sha256="b" * 64)


def index_of(*entries: IndexEntry) -> Index:
    now = datetime.now(timezone.utc)
    return Index(channel="stable", serial=1, generated=now, expires=now + timedelta(days=1), artifacts=list(entries))


def test_an_entry_whose_name_does_not_spell_its_key_is_refused():
    good = entry("manylinux_2_17_x86_64")
    other = ArtifactKey.parse(good.name.replace("x86_64", "aarch64"))
    with pytest.raises(ValidationError, match="does not spell its key"):
        IndexEntry(**{**good.model_dump(), "key": other.model_dump()})


def test_install_chooses_by_the_key():
    index = index_of(
        entry("manylinux_2_39_x86_64", build="20270101"),  # newer, but needs a newer glibc
        entry("musllinux_1_2_x86_64", build="20270101"),  # another libc
        entry("manylinux_2_17_aarch64", build="20270101"),  # another arch
        entry("manylinux_2_17_x86_64"),
        entry("manylinux_2_28_x86_64"),  # the most specific build this host runs
    )
    chosen = choose(index, Request.parse("3.13"), None, [GLIBC_236])
    assert chosen.key.platform == Platform(os="linux", arch="x86_64", libc="glibc", floor="2.28")
    with pytest.raises(InstallError, match="fits this host"):
        choose(index, Request.parse("3.13"), None, [Platform(os="linux", arch="x86_64", libc="glibc", floor="2.12")])
