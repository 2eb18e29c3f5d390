"""Work with archives after the build: unpack one safely and validate it."""

from __future__ import annotations

import tarfile
import tempfile
from pathlib import Path

import zstandard

from relocpy.errors import RelocpyError
from relocpy.models import ArtifactKey, ArtifactMetadata
from relocpy.recipes import load_recipes
from relocpy.validate import ValidationReport, validate_tree


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
        with open_archive(path) as tar:
            tar.extractall(into, filter="data")
    except (tarfile.TarError, zstandard.ZstdError, EOFError, OSError) as exc:
        raise RelocpyError(f"{path}: cannot unpack: {exc}") from None


def validate_artifact(path: Path) -> ValidationReport:
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
    excluded = meta.excluded_modules if meta else python.excluded_modules if python else {}
    known = python.known_test_failures if python else {}
    exports = [p for dep in recipes.dependencies.values() for p in dep.exports]
    arch = key.platform_tag.rsplit("_", 2)[-1] if "x86_64" not in key.platform_tag else "x86_64"
    with tempfile.TemporaryDirectory(prefix="relocpy-artifact-") as tmp:
        unpack(path, Path(tmp))
        tree = Path(tmp) / "python" / ("install" if key.flavor == "full" else "")
        if not (tree / "bin").is_dir():
            raise RelocpyError(f"{path}: no python/{'install/' if key.flavor == 'full' else ''}bin in the archive")
        report = validate_tree(tree, arch=arch, excluded_modules=excluded, export_prefixes=exports,
                               regression_tests=key.flavor == "full", known_test_failures=known)
    if report.platform_tag != key.platform_tag:
        raise RelocpyError(f"{path}: named {key.platform_tag} but its files need {report.platform_tag}")
    return report
