"""Package a validated tree into the three flavors, deterministically.

Entries are sorted, owned by 0:0, stamped with SOURCE_DATE_EPOCH and
normalised to 0644/0755; gzip headers carry no name or time. Building the
same inputs twice gives byte-identical archives.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import shutil
import stat
import tarfile
from pathlib import Path, PurePosixPath

from relocpy import shell
from relocpy.artifacts import tree_in_archive
from relocpy.extras import Lazy
from relocpy.fetch import FetchedSource
from relocpy.hashing import file_sha256
from relocpy.models import ArtifactKey, ArtifactMetadata, BuildPlan, Component, ValidationPolicy
from relocpy.toolchain import StripTool
from relocpy.validate import TEST_MODULES, ValidationReport

elf = Lazy("build", "relocpy.elf")  # pyelftools
zstandard = Lazy("build", "zstandard")

LICENSE_NAME = re.compile(r"^(LICENSE|LICENCE|COPYING|COPYRIGHT)([.-].*)?$", re.IGNORECASE)
# Stdlib test packages (and the static libpython), kept only in the full flavor.
TEST_DIRS = ("test", "idlelib/idle_test", "tkinter/test", "lib2to3/tests", "ctypes/test", "distutils/tests", "unittest/test")


FLAVORS = ("install_only", "install_only_stripped", "full")


def write_archives(
    tree: Path,
    plan: BuildPlan,
    platform_tag: str,
    build_tag: str,
    source_date_epoch: int,
    license_texts: dict[str, bytes],
    components: list[Component],
    strip: StripTool,
    out: Path,
) -> dict[str, Path]:
    """Each flavor's archive, by flavor. Their metadata comes once they are validated."""
    out.mkdir(parents=True, exist_ok=True)
    archives = {}
    for flavor in FLAVORS:
        key = ArtifactKey(
            version=plan.python.version, build_tag=build_tag, platform_tag=platform_tag,
            variant=plan.artifact_variant, flavor=flavor,
        )
        archive = out / key.filename
        entries = flavor_entries(tree, flavor, license_texts, plan, components)
        write_archive(archive, entries, source_date_epoch, strip if flavor == "install_only_stripped" else None)
        archives[flavor] = archive
    return archives


def write_metadata(
    archives: dict[str, Path], plan: BuildPlan, policy: ValidationPolicy, report: ValidationReport,
    components: list[Component], source_date_epoch: int,
) -> list[ArtifactMetadata]:
    """The .json beside each archive: the policy the archives passed, and what
    validating them found out."""
    common = _metadata_fields(plan, report, components, source_date_epoch)
    artifacts = []
    for archive in archives.values():
        meta = ArtifactMetadata(
            name=archive.name, key=ArtifactKey.parse(archive.name), sha256=file_sha256(archive),
            size=archive.stat().st_size, validation=policy, **common,
        )
        archive.with_name(f"{archive.name}.json").write_text(meta.model_dump_json(indent=2) + "\n")
        artifacts.append(meta)
    return artifacts


def bundled_components(plan: BuildPlan, sources: dict[str, FetchedSource]) -> list[Component]:
    components = [
        Component(name="cpython", version=plan.python.version, license="PSF-2.0",
                  source_file=sources["cpython"].source.file, sha256=sources["cpython"].source.sha256)
    ]
    for dep_step in plan.dependencies:
        dep, source = dep_step.dependency, sources[dep_step.dependency.name].source
        components.append(
            Component(name=dep.name, version=dep.version, license=dep.license, source_file=source.file, sha256=source.sha256)
        )
    return components


def _metadata_fields(plan, report: ValidationReport, components, source_date_epoch) -> dict:
    return {
        "python_version": plan.python.version,
        "python_tag": report.python_tag,
        "abi_tag": report.abi_tag,
        "abiflags": report.abiflags,
        "target_triple": plan.target.triple,
        "platform_tag": report.platform_tag,
        "glibc_max": report.glibc_max,
        "wheel_tags": report.wheel_tags,
        "variant": plan.variant.name,
        "configure_flags": plan.configure_flags,
        "components": components,
        "measured": report.measured,
        "source_date_epoch": source_date_epoch,
        "plan_hash": plan.content_hash,
    }


# --- what goes into each flavor --------------------------------------------------


def flavor_entries(tree: Path, flavor: str, license_texts: dict[str, bytes], plan, components) -> list[tuple[str, Path | bytes]]:
    """(archive path, file on disk or bytes) pairs, before sorting."""
    if flavor == "full":
        inner = tree_in_archive(flavor).as_posix()
        entries = [(f"{inner}/{rel}", path) for rel, path in _walk(tree)]
        entries += [(f"python/licenses/LICENSE.{name}.txt", text) for name, text in license_texts.items()]
        info = {"plan": plan.model_dump(mode="json"), "components": [c.model_dump() for c in components]}
        entries.append(("python/build-info.json", (json.dumps(info, indent=2, sort_keys=True) + "\n").encode()))
        return entries
    inner = tree_in_archive(flavor).as_posix()
    return [(f"{inner}/{rel}", path) for rel, path in _walk(tree) if not _is_test_only(rel)]


def _walk(tree: Path) -> list[tuple[str, Path]]:
    return [(p.relative_to(tree).as_posix(), p) for p in tree.rglob("*")]


def _is_test_only(rel: str) -> bool:
    parts = PurePosixPath(rel).parts
    if len(parts) >= 3 and parts[0] == "lib" and parts[1].startswith("python3"):
        inner = "/".join(parts[2:])
        if any(inner == d or inner.startswith(d + "/") for d in TEST_DIRS):
            return True
        if parts[2] == "lib-dynload" and len(parts) == 4:
            return parts[3].split(".")[0] in TEST_MODULES
        # The static libpython (for static embedding) is as large as the rest.
        if parts[2].startswith("config-") and parts[-1].startswith("libpython") and parts[-1].endswith(".a"):
            return True
    return False


# --- deterministic archives ------------------------------------------------------------


def write_archive(archive: Path, entries: list[tuple[str, Path | bytes]], mtime: int, strip: StripTool | None) -> None:
    """strip: strip the debug information of every ELF file with this tool."""
    tmp = archive.with_name(f".{archive.name}.partial")
    strip_dir = archive.parent / ".strip"
    stripper = (lambda path: _stripped_copy(path, strip_dir, strip)) if strip else None
    try:
        with tmp.open("wb") as raw:
            if archive.name.endswith(".tar.zst"):
                compressor = zstandard.ZstdCompressor(level=12, threads=-1)
                with compressor.stream_writer(raw, closefd=False) as stream:
                    _write_tar(stream, entries, mtime, stripper)
            else:
                with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as stream:
                    _write_tar(stream, entries, mtime, stripper)
        tmp.replace(archive)
    finally:
        tmp.unlink(missing_ok=True)
        shutil.rmtree(strip_dir, ignore_errors=True)


def _write_tar(stream, entries, mtime: int, stripper) -> None:
    with tarfile.open(fileobj=stream, mode="w|", format=tarfile.GNU_FORMAT) as tar:
        for name, content in sorted(entries, key=lambda e: e[0]):
            info = tarfile.TarInfo(name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = mtime, 0, 0, "root", "root"
            if isinstance(content, bytes):
                info.size, info.mode = len(content), 0o644
                tar.addfile(info, io.BytesIO(content))
                continue
            mode = content.lstat().st_mode
            if stat.S_ISLNK(mode):
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, str(content.readlink()), 0o777
                tar.addfile(info)
            elif stat.S_ISDIR(mode):
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                path = stripper(content) if stripper and elf.is_elf(content) else content
                info.size = path.stat().st_size
                info.mode = 0o755 if mode & 0o111 else 0o644
                with path.open("rb") as handle:
                    tar.addfile(info, handle)


def _stripped_copy(path: Path, strip_dir: Path, strip: StripTool) -> Path:
    strip_dir.mkdir(parents=True, exist_ok=True)
    copy = strip_dir / "elf"
    shutil.copyfile(path, copy)
    shell.capture([*strip.argv, str(copy)])
    return copy


# --- licenses --------------------------------------------------------------------------


def license_texts(cpython_license: Path, sources: dict[str, FetchedSource]) -> dict[str, bytes]:
    """License text of every bundled component, read from its source archive."""
    texts = {"cpython": cpython_license.read_bytes()}
    for name, fetched in sources.items():
        if name != "cpython":
            texts[name] = _license_from_archive(fetched.path)
    return texts


def _license_from_archive(archive: Path) -> bytes:
    best: tuple[int, str] | None = None
    with tarfile.open(archive) as tar:
        for member in tar:
            parts = PurePosixPath(member.name).parts
            if member.isfile() and len(parts) <= 3 and LICENSE_NAME.match(parts[-1]):
                if best is None or (len(parts), member.name) < best:
                    best = (len(parts), member.name)
        if best is None:
            return b"(no license file found in the source archive)\n"
        return tar.extractfile(best[1]).read()
