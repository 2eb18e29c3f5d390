"""Work with archives after the build: find, unpack and validate them."""

from __future__ import annotations

import tarfile
import tempfile
from pathlib import Path

from pydantic import ValidationError

from relocpy.errors import InstallError, UsageError, ValidationFailed
from relocpy.emulation import require_runnable
from relocpy.extras import Lazy
from relocpy.hashing import file_sha256
from relocpy.models import METADATA_SCHEMA_VERSION, ArtifactKey, ArtifactMetadata, ValidationPolicy
from relocpy.unpack import extract
from relocpy.validate import ValidationReport, check_files, run_runtime_checks, tag_of

zstandard = Lazy("build", "zstandard")


def archives_in(directory: Path) -> list[Path]:
    """The artifact archives in a directory (not their .json metadata)."""
    return sorted(p for p in directory.glob("cpython-*") if p.name.endswith((".tar.gz", ".tar.zst")))


def archives_to_validate(path: Path) -> list[Path]:
    """`relocpy validate PATH`: the archive, or every archive in the directory;
    never nothing, which would pass for a success."""
    if path.is_dir():
        found = archives_in(path)
        if not found:
            raise UsageError(f"{path}: no artifact archives (cpython-*.tar.gz, cpython-*.tar.zst) in this directory")
        return found
    if not path.is_file():
        raise UsageError(f"{path}: no such file or directory")
    return [path]


def open_archive(path: Path) -> tarfile.TarFile:
    """A stream over the archive's members, for reading them (not for extracting)."""
    if path.name.endswith(".tar.zst"):
        reader = zstandard.ZstdDecompressor().stream_reader(path.open("rb"), closefd=True)
        return tarfile.open(fileobj=reader, mode="r|")
    return tarfile.open(path, mode="r:gz")


def unpack(path: Path, into: Path) -> None:
    """Unpack as `relocpy install` does: every member checked before anything is
    written (no absolute paths, '..', links leaving the tree, device files).
    Not tarfile's extraction filters: Debian 12's Python 3.11.2 predates them."""
    try:
        extract(path, into)
    except InstallError as exc:
        raise ValidationFailed(f"validation failed: {exc}") from None


# Where an archive is unpacked for validation, then moved to: a consumer may
# unpack anywhere, paths with spaces and non-ASCII characters included.
UNPACKED_AT = Path("unpacked here ü ✓") / "first"
MOVED_TO = Path("unpacked here ü ✓") / "moved after unpacking"


def tree_in_archive(flavor: str) -> Path:
    """Where the interpreter's prefix sits inside an unpacked archive."""
    return Path("python", "install") if flavor == "full" else Path("python")


def validate_archive(archive: Path, policy: ValidationPolicy, regression_tests: bool) -> ValidationReport:
    """Validate an archive as it ships: unpack it as a consumer would, check
    every file, move the unpacked tree elsewhere and run it from there."""
    require_runnable(policy.platform)
    inner = tree_in_archive(ArtifactKey.parse(archive.name).flavor)
    with tempfile.TemporaryDirectory(prefix="relocpy-validate-") as tmp:
        unpacked, moved = Path(tmp) / UNPACKED_AT, Path(tmp) / MOVED_TO
        unpack(archive, unpacked)
        if not (unpacked / inner / "bin").is_dir():
            raise ValidationFailed(f"validation failed: {archive.name}: no {inner}/bin in the archive")
        try:
            summary = check_files(unpacked / inner, policy)
            unpacked.rename(moved)
            runtime = run_runtime_checks(moved / inner, Path(tmp), policy, regression_tests)
        except ValidationFailed as exc:
            raise ValidationFailed(f"{archive.name}: {exc}") from None
    return ValidationReport(platform_tag=tag_of(summary, policy), glibc_max=summary.libc_max, **runtime)


def validate_artifact(path: Path) -> ValidationReport:
    """`relocpy validate`: one archive, by the policy its metadata records it
    passed when it was built; nothing comes from today's recipes or its name."""
    meta = read_artifact_metadata(path)
    if file_sha256(path) != meta.sha256:
        raise ValidationFailed(f"validation failed: {path.name}: its sha256 is not the one its metadata records")
    report = validate_archive(path, meta.validation, regression_tests=meta.key.flavor == "full")
    _check_matches_metadata(path.name, report, meta)
    return report


def read_artifact_metadata(path: Path) -> ArtifactMetadata:
    """The `<archive>.json` beside an archive, which must describe it."""
    try:
        ArtifactKey.parse(path.name)
    except ValueError:
        raise UsageError(f"{path}: not a relocpy artifact name (cpython-VERSION+TAG-PLATFORM-…-FLAVOR.tar.gz)") from None
    meta_path = path.with_name(path.name + ".json")
    if not meta_path.is_file():
        raise UsageError(f"{path}: no {meta_path.name} beside it: validation takes its policy from there")
    try:
        meta = ArtifactMetadata.model_validate_json(meta_path.read_bytes())
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise UsageError(f"{meta_path}: not artifact metadata of schema {METADATA_SCHEMA_VERSION}: "
                         f"{where}: {error['msg']}") from None
    if meta.name != path.name:
        raise UsageError(f"{meta_path}: describes {meta.name}, not {path.name}")
    return meta


def _check_matches_metadata(name: str, report: ValidationReport, meta: ArtifactMetadata) -> None:
    """The files support the tag in the name, and the interpreter is the one
    the metadata describes (wheel tags aside: they depend on the host's glibc)."""
    if report.platform_tag != meta.key.platform_tag:
        raise ValidationFailed(f"validation failed: {name}: named {meta.key.platform_tag}, but its files need {report.platform_tag}")
    found = (report.python_tag, report.abi_tag, report.measured.ext_suffix)
    recorded = (meta.python_tag, meta.abi_tag, meta.measured.ext_suffix)
    if found != recorded:
        raise ValidationFailed(f"validation failed: {name}: its interpreter reports {found}, its metadata {recorded}")
