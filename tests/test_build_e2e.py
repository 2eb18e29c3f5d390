"""End-to-end: really build 3.13.15 and 3.11.2 from the mirror, validate the
archives, and check that failures leave nothing in --dist.

The builds are conftest's `built`: the default runner (Docker) and the
session's build tag, so the dependencies are built once for the whole session
(the cache is RELOCPY_CACHE_DIR in CI) and the second build only compiles
CPython.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from relocpy.artifacts import archives_in, unpack
from relocpy.hashing import file_sha256
from relocpy.models import ArtifactKey, ArtifactMetadata
from relocpy.paths import project_root
from support import BUILD_TAG
from support import BUILD_TARGET as TARGET

pytestmark = pytest.mark.e2e


def relocpy(*args, env=None, timeout=3600):
    return subprocess.run([sys.executable, "-m", "relocpy", *args], capture_output=True, text=True, env=env, timeout=timeout)


@pytest.mark.parametrize("python", ["3.13.15", "3.11.2"])
def test_build_leaves_three_validated_archives_with_metadata(built, python):
    dist = built(python)
    archives = [p.name for p in archives_in(dist)]
    assert len(archives) == 3, archives
    flavors = {ArtifactKey.parse(name).flavor for name in archives}
    assert flavors == {"install_only", "install_only_stripped", "full"}
    assert not list(dist.glob(".*")), "staging files left in dist"
    for name in archives:
        meta = ArtifactMetadata.model_validate_json((dist / f"{name}.json").read_text())
        key = ArtifactKey.parse(name)
        assert meta.key == key and meta.python_version == python and meta.variant == "noopt"
        assert key.platform_tag == meta.platform_tag == f"manylinux_{meta.glibc_max.replace('.', '_')}_x86_64"
        assert meta.wheel_tags[0].startswith(f"cp{python.replace('.', '')[:3]}-cp{python.replace('.', '')[:3]}-manylinux")
        assert {c.name for c in meta.components} >= {"cpython", "openssl", "sqlite", "zlib", "libedit", "libuuid"}
        assert meta.size == (dist / name).stat().st_size
        # the policy it passed, enough to validate it again, and what it measured
        assert meta.validation.platform.name == "manylinux_2_17_x86_64" and meta.validation.enforce_floor
        assert meta.measured.openssl_version.startswith("OpenSSL 3.") and meta.measured.sqlite_version
        assert meta.measured.ext_suffix == f".cpython-{python.replace('.', '')[:3]}-x86_64-linux-gnu.so"
        # 3.11 builds _ctypes, _curses and readline with setup.py, outside the
        # MODULE_*_STATE list the module facts come from (the smoke check imports them)
        setup_py_modules = set() if python.startswith("3.11.") else {"_ctypes"}
        assert {"_ssl", "_sqlite3", *setup_py_modules} <= set(meta.measured.extension_modules)


def test_install_only_layout_and_size(built):
    dist = built("3.13.15")
    [install_only] = dist.glob("*-install_only.tar.gz")
    [stripped] = dist.glob("*-install_only_stripped.tar.gz")
    with tarfile.open(install_only) as tar:
        names = tar.getnames()
    assert all(n == "python" or n.startswith("python/") for n in names)
    assert "python/bin/python3" in names and "python/lib/python3.13/os.py" in names
    assert not any("/test/" in n and n.startswith("python/lib/python3.13/test/") for n in names)
    assert not any("__pycache__" in n for n in names)
    assert stripped.stat().st_size < install_only.stat().st_size


@pytest.mark.parametrize("python", ["3.13.15", "3.11.2"])
def test_relocpy_validate_accepts_the_install_only_archive(built, python):
    dist = built(python)
    [archive] = dist.glob("*-install_only.tar.gz")
    result = relocpy("validate", str(archive))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "valid (manylinux_" in result.stderr


def test_rebuild_with_everything_cached_reuses_the_archives(built, shared_cache, sources_mirror, tmp_path):
    first = built("3.13.15")
    result = relocpy("build", "--python", "3.13.15", "--target", TARGET, "--variant", "noopt", "--runner", "docker",
                     "--dist", str(tmp_path), "--build-tag", BUILD_TAG, "--mirror", str(sources_mirror),
                     "--cache-dir", str(shared_cache), "--offline")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "relocate, validate and package: cached" in result.stderr
    for archive in first.glob("cpython-*"):
        assert (tmp_path / archive.name).read_bytes() == archive.read_bytes()


def repacked(archive: Path, tmp_path: Path, change) -> Path:
    """A copy of an install_only archive, under its own name, with change(tree)
    applied, and its metadata (validation takes its policy from there),
    describing the new bytes."""
    unpacked = tmp_path / "unpacked"
    unpack(archive, unpacked)
    change(unpacked / "python")
    bad = tmp_path / "bad" / archive.name
    bad.parent.mkdir()
    with tarfile.open(bad, "w:gz") as tar:
        tar.add(unpacked / "python", arcname="python")
    meta = ArtifactMetadata.model_validate_json(archive.with_name(archive.name + ".json").read_text())
    meta = meta.model_copy(update={"sha256": file_sha256(bad), "size": bad.stat().st_size})
    bad.with_name(bad.name + ".json").write_text(meta.model_dump_json())
    return bad


def plant_in_text(tree: Path) -> None:
    sysconfig_file = next((tree / "lib" / "python3.13").glob("_sysconfigdata_*.py"))
    sysconfig_file.write_text(sysconfig_file.read_text() + "\n# built in /opt/relocpy-build-prefix/python\n")


def plant_in_binary(tree: Path) -> None:
    [ssl] = (tree / "lib" / "python3.13" / "lib-dynload").glob("_ssl.*.so")
    ssl.write_bytes(ssl.read_bytes() + b"\0/opt/relocpy-build-prefix/python/lib/ossl-modules\0")


@pytest.mark.parametrize("plant, refused", [
    (plant_in_text, "names the build path /opt/relocpy-build-prefix/python"),
    (plant_in_binary, "lib-dynload/_ssl.cpython-313-x86_64-linux-gnu.so names the build path /opt/relocpy-build-prefix/python"),
])
def test_validate_refuses_a_build_path_in_any_file(built, tmp_path, plant, refused):
    [archive] = built("3.13.15").glob("*-install_only.tar.gz")
    result = relocpy("validate", str(repacked(archive, tmp_path, plant)))
    assert result.returncode == 1
    assert refused in result.stderr
    assert "Traceback" not in result.stderr


def test_validate_refuses_symbol_versions_damaged_by_gnu_strip(built, tmp_path):
    """GNU strip (binutils 2.40) on files zig linked: the archive this issue started from."""
    [archive] = built("3.13.15").glob("*-install_only.tar.gz")

    def gnu_strip(tree: Path) -> None:
        subprocess.run(["strip", "--strip-debug", str(tree / "bin" / "python3.13")], check=True)

    result = relocpy("validate", str(repacked(archive, tmp_path, gnu_strip)))
    assert result.returncode == 1, result.stderr[-2000:]
    # refused by reading the file, before anything runs
    assert "bin/python3.13: .dynstr is not what the loader reads at its address" in result.stderr, result.stderr
    assert "smoke checks" not in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("flavor", ["install_only", "install_only_stripped", "full"])
def test_every_flavor_starts_after_unpacking_elsewhere(built, tmp_path, flavor):
    """Independently of the build's own validation: unpack, move, run."""
    [archive] = [a for a in archives_in(built("3.13.15")) if ArtifactKey.parse(a.name).flavor == flavor]
    first, moved = tmp_path / "first", tmp_path / "elsewhere ü"
    unpack(archive, first)
    first.rename(moved)
    prefix = moved / "python" / ("install" if flavor == "full" else "")
    probe = "import ssl, sqlite3, lzma, bz2, zlib, ctypes, readline, uuid, sys; print(sys.prefix)"
    done = subprocess.run([str(prefix / "bin" / "python3"), "-c", probe], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin"}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()) == prefix


def test_failing_build_names_the_patch_and_leaves_dist_empty(built, tmp_path, shared_cache, sources_mirror):
    root = tmp_path / "project"
    shutil.copytree(project_root(), root, ignore=shutil.ignore_patterns(".git", ".cache", "dist", "*.egg-info"))
    patch = root / "patches" / "cpython" / "3.13" / "0001-ssl-find-system-ca-store.patch"
    patch.write_text(patch.read_text().replace("        self.set_default_verify_paths()\n", "        self.no_such_line()\n", 1))
    dist = tmp_path / "dist"
    env = {**__import__("os").environ, "RELOCPY_ROOT": str(root)}
    # The session's build tag: its epoch is in every step's key, so the dependencies come from the cache.
    built("3.13.15")  # its dependencies, in the session's cache
    result = relocpy("build", "--python", "3.13.15", "--target", TARGET, "--variant", "noopt", "--runner", "docker",
                     "--dist", str(dist), "--build-tag", BUILD_TAG, "--mirror", str(sources_mirror),
                     "--cache-dir", str(shared_cache), "--offline", env=env)
    assert result.returncode == 1
    assert "patch cpython/3.13/0001-ssl-find-system-ca-store.patch does not apply" in result.stderr
    assert "Traceback" not in result.stderr
    assert not dist.exists() or not any(dist.iterdir())
