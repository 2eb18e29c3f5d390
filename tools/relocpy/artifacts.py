"""Work with archives after the build: unpack one safely and validate it."""

from __future__ import annotations

import tarfile
import tempfile
from pathlib import Path

from relocpy.errors import RelocpyError, ValidationFailed
from relocpy.extras import Lazy
from relocpy.models import ArtifactKey, ArtifactMetadata
from relocpy.recipes import load_recipes
from relocpy.unpack import extract_all
from relocpy.validate import ValidationPolicy, ValidationReport, check_files, run_runtime_checks

elf = Lazy("build", "relocpy.elf")  # pyelftools
zstandard = Lazy("build", "zstandard")


def archives_in(directory: Path) -> list[Path]:
    """The artifact archives in a directory (not their .json metadata)."""
    return sorted(p for p in directory.glob("cpython-*") if p.name.endswith((".tar.gz", ".tar.zst")))


def open_archive(path: Path) -> tarfile.TarFile:
    if path.name.endswith(".tar.zst"):
        reader = zstandard.ZstdDecompressor().stream_reader(path.open("rb"), closefd=True)
        return tarfile.open(fileobj=reader, mode="r|")
    return tarfile.open(path, mode="r:gz")


def unpack(path: Path, into: Path) -> None:
    """Extract refusing absolute paths, '..', links leaving the tree and device files."""
    try:
        extract_all(lambda: open_archive(path), into)
    except (tarfile.TarError, zstandard.ZstdError, EOFError, OSError) as exc:
        raise RelocpyError(f"{path}: cannot unpack: {exc}") from None


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
    platform_tag = elf.manylinux_tag(summary.glibc_max, policy.arch)
    return ValidationReport(platform_tag=platform_tag, glibc_max=summary.glibc_max, **runtime)


def validate_artifact(path: Path) -> ValidationReport:
    """`relocpy validate`: one archive, by the rules of today's recipes."""
    if not path.is_file():
        raise RelocpyError(f"{path}: no such artifact")
    try:
        key = ArtifactKey.parse(path.name)
    except ValueError:
        raise RelocpyError(f"{path}: not a relocpy artifact name (cpython-VERSION+TAG-PLATFORM-…-FLAVOR.tar.gz)") from None
    meta_path = path.with_name(path.name + ".json")
    meta = ArtifactMetadata.model_validate_json(meta_path.read_text()) if meta_path.is_file() else None
    recipes = load_recipes()
    python = recipes.pythons.get(key.version)
    policy = ValidationPolicy(
        arch=key.platform_tag.rsplit("_", 2)[-1] if "x86_64" not in key.platform_tag else "x86_64",
        excluded_modules=meta.excluded_modules if meta else python.excluded_modules if python else {},
        export_prefixes=[p for dep in recipes.dependencies.values() for p in dep.exports],
        known_test_failures=python.known_test_failures if python else {},
    )
    report = validate_archive(path, policy, regression_tests=key.flavor == "full")
    if report.platform_tag != key.platform_tag:
        raise RelocpyError(f"{path}: named {key.platform_tag} but its files need {report.platform_tag}")
    return report
