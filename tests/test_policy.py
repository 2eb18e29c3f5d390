"""Platform policies (recipes/policies.toml) and the one validation policy:
what ELF files may need per libc and arch, the tag they get, and `relocpy
validate` re-applying the policy an artifact's metadata records."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from relocpy import artifacts, elf
from relocpy.errors import RecipeError, UsageError, ValidationFailed
from relocpy.models import ArtifactMetadata
from relocpy.paths import project_root
from relocpy.recipes import check_recipes, load_recipes
from support import artifact_key, host_validation_policy, member, one_error_line, relocpy, tar_with, write_metadata

ROOT = project_root()
HARDENED = ["-Wl,-z,relro", "-Wl,-z,now", "-Wl,-z,noexecstack"]
MAIN = "int main(void) { return 0; }\n"
POLICIES = load_recipes().policies
GLIBC_X86_64, GLIBC_AARCH64 = POLICIES["manylinux_2_17_x86_64"], POLICIES["manylinux_2_17_aarch64"]
MUSL_X86_64 = POLICIES["musllinux_1_2_x86_64"]


def gcc(tmp_path: Path, source: str, out: str, *flags: str) -> Path:
    (tmp_path / f"{out}.c").write_text(source)
    subprocess.run(["gcc", "-O1", "-fPIC", f"{out}.c", "-o", out, *HARDENED, *flags],
                   cwd=tmp_path, check=True, capture_output=True)
    return tmp_path / out


# --- the data -------------------------------------------------------------------------


def test_every_linux_target_has_the_policy_of_its_libc_arch_and_floor(recipe_copy):
    assert check_recipes(load_recipes(recipe_copy)) == []
    policies = recipe_copy / "policies.toml"
    text = policies.read_text()
    policies.write_text(text[:text.index("[manylinux_2_17_aarch64]")] + text[text.index("[musllinux_1_2_x86_64]"):])
    problems = check_recipes(load_recipes(recipe_copy))
    assert problems == ["targets.toml: [aarch64-unknown-linux-gnu]: no platform policy for glibc aarch64 "
                        "at floor 2.17 in policies.toml"]


def test_a_policy_named_for_another_floor_is_refused(recipe_copy):
    policies = recipe_copy / "policies.toml"
    policies.write_text(policies.read_text().replace('floor = "2.17"', 'floor = "2.28"', 1))
    with pytest.raises(RecipeError, match=r"\[manylinux_2_17_x86_64\]: .*named manylinux_2_28_x86_64"):
        load_recipes(recipe_copy)


@pytest.fixture
def recipe_copy(tmp_path):
    target = tmp_path / "recipes"
    shutil.copytree(ROOT / "recipes", target)
    return target


# --- DT_NEEDED, per arch and libc ----------------------------------------------------------


def test_each_arch_allows_its_own_loader_only(tmp_path):
    program = gcc(tmp_path, MAIN, "loader", "-Wl,--no-as-needed", str(GLIBC_X86_64.loader))
    assert elf.check_file(program, GLIBC_X86_64, [])[0] == []
    problems, _ = elf.check_file(program, GLIBC_AARCH64, [])
    assert problems == ["built for EM_X86_64, not aarch64",
                        "needs ld-linux-x86-64.so.2, not a base library of manylinux_2_17_aarch64"]


def test_a_musl_policy_refuses_glibc_and_its_symbol_versions(tmp_path):
    program = gcc(tmp_path, MAIN, "glibc")
    problems, libc = elf.check_file(program, MUSL_X86_64, [])
    assert "needs libc.so.6, not a base library of musllinux_1_2_x86_64" in problems
    assert any(p.startswith("needs symbol versions musllinux_1_2_x86_64 does not allow: GLIBC_") for p in problems)
    assert libc is None


# --- symbol-version namespaces ----------------------------------------------------------------


VERSION_SCRIPT = """\
GCC_4.8.0 { global: gcc_ok; };
GLIBCXX_3.4.30 { global: cxx_new; };
GLIBC_PRIVATE { global: private_thing; };
"""


def test_every_namespace_is_held_to_its_ceiling(tmp_path):
    """A stand-in libgcc_s.so.1 (an allowed library) defining the versions."""
    (tmp_path / "v.map").write_text(VERSION_SCRIPT)
    gcc(tmp_path, "int gcc_ok(void){return 1;}\nint cxx_new(void){return 2;}\nint private_thing(void){return 3;}\n",
        "libgcc_s.so.1", "-shared", "-Wl,--version-script=v.map", "-Wl,-soname,libgcc_s.so.1")
    uses = "int gcc_ok(void); int cxx_new(void); int private_thing(void);\n"
    program = gcc(tmp_path, uses + "int main(void) { return gcc_ok() + cxx_new() + private_thing(); }\n",
                  "needs", str(tmp_path / "libgcc_s.so.1"))
    problems, _ = elf.check_file(program, GLIBC_X86_64, [])
    assert sorted(problems) == [
        "needs GLIBCXX_3.4.30, above manylinux_2_17_x86_64's GLIBCXX_3.4.19",
        "needs symbol versions manylinux_2_17_x86_64 does not allow: GLIBC_PRIVATE",
    ]


def test_tags_come_from_the_policys_family():
    assert elf.platform_tag(MUSL_X86_64, None) == "musllinux_1_2_x86_64"
    assert elf.platform_tag(POLICIES["musllinux_1_2_aarch64"], None) == "musllinux_1_2_aarch64"
    assert elf.platform_tag(GLIBC_AARCH64, "2.28") == "manylinux_2_28_aarch64"


# --- the recorded validation policy --------------------------------------------------------------


def test_metadata_records_the_policy_but_not_this_machines_paths():
    policy = host_validation_policy(build_paths=["/home/builder/cache"], enforce_floor=True)
    recorded = json.loads(policy.model_dump_json())
    assert "build_paths" not in recorded
    assert recorded["platform"]["name"] == "manylinux_2_17_x86_64" and recorded["enforce_floor"] is True
    assert type(policy).model_validate(recorded) == policy.model_copy(update={"build_paths": []})


def packed(tmp_path: Path, policy, program_source: str = MAIN, **key_fields) -> Path:
    """An install_only archive whose bin/python3 is a small program, and its metadata."""
    program = gcc(tmp_path, program_source, "python3")
    dist = tmp_path / "dist"
    dist.mkdir()
    key = artifact_key(platform_tag="manylinux_2_34_x86_64", **key_fields)
    archive = dist / key.filename
    tar_with(archive, [member("python/", tarfile.DIRTYPE), member("python/bin/", tarfile.DIRTYPE),
                       member("python/bin/python3", data=program.read_bytes())])
    meta_path = write_metadata(archive, key)
    meta = ArtifactMetadata.model_validate_json(meta_path.read_text())
    meta_path.write_text(meta.model_copy(update={"validation": policy}).model_dump_json())
    return archive


def hide_recipes(monkeypatch, tmp_path) -> None:
    """validate_artifact must not need today's recipes."""
    monkeypatch.setenv("RELOCPY_ROOT", str(tmp_path / "no-recipes-here"))


def test_validate_artifact_enforces_the_floor_its_metadata_records(tmp_path, monkeypatch):
    archive = packed(tmp_path, host_validation_policy(enforce_floor=True))  # gcc here links GLIBC_2.34
    hide_recipes(monkeypatch, tmp_path)
    with pytest.raises(ValidationFailed, match=r"need more than GLIBC_2\.17 \(up to GLIBC_2\.3\d\)"):
        artifacts.validate_artifact(archive)


def test_validate_artifact_takes_the_arch_from_metadata_not_the_name(tmp_path, monkeypatch):
    archive = packed(tmp_path, host_validation_policy(platform=GLIBC_AARCH64))
    hide_recipes(monkeypatch, tmp_path)
    assert "x86_64" in archive.name
    # (tools/install-host-deps registers qemu-aarch64: the aarch64 policy's checks run, and refuse x86_64 files)
    with pytest.raises(ValidationFailed, match=r"built for EM_X86_64, not aarch64"):
        artifacts.validate_artifact(archive)


def test_validate_artifact_needs_its_metadata(tmp_path, monkeypatch):
    archive = packed(tmp_path, host_validation_policy())
    hide_recipes(monkeypatch, tmp_path)
    meta_path = archive.with_name(archive.name + ".json")
    old = json.loads(meta_path.read_text())
    del old["validation"], old["measured"]
    meta_path.write_text(json.dumps({**old, "schema_version": 1}))
    with pytest.raises(UsageError, match=r"not artifact metadata of schema 2: schema_version: "):
        artifacts.validate_artifact(archive)
    meta_path.unlink()
    with pytest.raises(UsageError, match=r"no .*\.json beside it"):
        artifacts.validate_artifact(archive)


def test_validate_artifact_refuses_bytes_other_than_the_metadata_says(tmp_path, monkeypatch):
    archive = packed(tmp_path, host_validation_policy())
    hide_recipes(monkeypatch, tmp_path)
    with archive.open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ValidationFailed, match="its sha256 is not the one its metadata records"):
        artifacts.validate_artifact(archive)


# --- what `relocpy validate` is given ---------------------------------------------------------------


def test_nothing_to_validate_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no artifact archives"):
        artifacts.archives_to_validate(tmp_path)
    with pytest.raises(UsageError, match="no such file or directory"):
        artifacts.archives_to_validate(tmp_path / "missing")


def test_validate_cli_on_an_empty_directory_is_one_error_line(tmp_path):
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "PYTHONPATH": str(ROOT / "tools"),
           "RELOCPY_ROOT": str(ROOT), "HOME": str(tmp_path)}
    result = relocpy("validate", str(tmp_path), env=env)
    assert result.returncode == 2
    assert one_error_line(result) == f"relocpy: error: {tmp_path}: no artifact archives (cpython-*.tar.gz, cpython-*.tar.zst) in this directory"


def test_unpacking_for_validation_needs_no_tarfile_extraction_filter(tmp_path, monkeypatch):
    """Debian 12's Python 3.11.2 has no extractall(filter=): validation unpacks as install does."""
    def no_extractall(*args, **kwargs):
        raise AssertionError("tarfile extraction (filter= is missing from Python 3.11.2)")

    monkeypatch.setattr(tarfile.TarFile, "extractall", no_extractall)
    monkeypatch.setattr(tarfile.TarFile, "extract", no_extractall)
    archive = tmp_path / artifact_key().filename
    tar_with(archive, [member("python/bin/python3", data=b"#!/bin/sh\n")])
    artifacts.unpack(archive, tmp_path / "out")
    assert (tmp_path / "out" / "python" / "bin" / "python3").read_bytes() == b"#!/bin/sh\n"
    assert os.access(tmp_path / "out" / "python" / "bin" / "python3", os.X_OK)


def test_an_unsafe_archive_fails_validation_in_one_line(tmp_path):
    archive = tmp_path / artifact_key().filename
    tar_with(archive, [member("python/../escape", data=b"x")])
    with pytest.raises(ValidationFailed, match=r"^validation failed: .*contains '\.\.'; refusing the archive$"):
        artifacts.unpack(archive, tmp_path / "out")
