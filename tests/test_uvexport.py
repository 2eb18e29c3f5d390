"""uv's download-metadata export, and a real `uv python install` through it."""

import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from relocpy.index import Index, IndexEntry
from relocpy.models import ArtifactKey, Platform
from relocpy.uvexport import export, platform_fields, uv_variant
from support import HOST_VERSION, MINOR, relocpy

UV_FIELDS = {"name", "arch", "os", "libc", "major", "minor", "patch", "prerelease", "url", "sha256", "variant", "build"}


def entry(name_version="3.13.15", platform="manylinux_2_17_x86_64", flavor="install_only", options="pgo+lto",
          variant=None, build="20261124"):
    key = ArtifactKey(version=name_version, build_tag=build, platform_tag=platform, variant=variant, flavor=flavor)
    name = key.filename
    return IndexEntry(
        name=name, key=key, url=name.replace("+", "%2B"), sha256="a" * 64, size=1, abi_tag="cp313",
        build_options=options, metadata_url=name + ".json", metadata_sha256="b" * 64,
    )


def index_of(*entries):
    now = datetime.now(timezone.utc)
    return Index(channel="stable", serial=1, generated=now, expires=now + timedelta(days=1), artifacts=list(entries))


def test_platform_and_variant_mapping():
    def fields(tag):
        return platform_fields(Platform.from_tag(tag))

    assert fields("manylinux_2_17_x86_64") == ("linux", "x86_64", "gnu")
    assert fields("musllinux_1_2_aarch64") == ("linux", "aarch64", "musl")
    assert fields("macosx_11_0_arm64") == ("darwin", "aarch64", "none")
    assert fields("win_amd64") == ("windows", "x86_64", "none")
    assert fields("manylinux_2_17_riscv64") is None
    assert uv_variant("freethreaded+pgo+lto") == "freethreaded"
    assert uv_variant("debug+freethreaded") == "freethreaded+debug"
    assert uv_variant("pgo+lto") is None


def test_export_shape_preference_and_urls():
    exported = export(index_of(
        entry(), entry(flavor="install_only_stripped"), entry(flavor="full"),
        entry(options="freethreaded+pgo+lto", variant="freethreaded"),
        entry("3.14.0rc1", platform="musllinux_1_2_x86_64"),
    ), "http://127.0.0.1:1/dl/index.json")
    assert list(exported) == [
        "cpython-3.14.0rc1-linux-x86_64-musl",
        "cpython-3.13.15-linux-x86_64-gnu",
        "cpython-3.13.15+freethreaded-linux-x86_64-gnu",
    ]
    gnu = exported["cpython-3.13.15-linux-x86_64-gnu"]
    assert set(gnu) == UV_FIELDS
    assert gnu["url"].endswith("install_only_stripped.tar.gz")  # uv's own preference
    assert gnu["url"].startswith("http://127.0.0.1:1/dl/cpython-3.13.15%2B")  # made absolute
    assert exported["cpython-3.14.0rc1-linux-x86_64-musl"]["prerelease"] == "rc1"
    assert exported["cpython-3.13.15+freethreaded-linux-x86_64-gnu"]["variant"] == "freethreaded"


def test_export_refuses_unverified_index(dist, signing_key, env, tmp_path):
    relocpy("index", "build", str(dist), "--base-url", "http://h/x", "--sign", str(signing_key[0]), env=env, check=True)
    stranger = relocpy("keys", "generate", "--out", str(tmp_path / "x.key"), env=env, check=True).stdout.strip()
    result = relocpy("index", "export-uv", str(dist), "--trusted-key", stranger, "--out", str(tmp_path / "uv.json"), env=env)
    assert result.returncode == 1 and not (tmp_path / "uv.json").exists()


@pytest.mark.e2e
def test_uv_installs_our_artifact_from_the_export(served, dist, signing_key, env, tmp_path):
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not installed")
    key, public = signing_key
    relocpy("index", "build", str(dist), "--base-url", served.url, "--sign", str(key), env=env, check=True)
    out = tmp_path / "uv-downloads.json"
    relocpy("index", "export-uv", served.url, "--trusted-key", public, "--out", str(out), env=env, check=True)
    uv_env = {**env, "UV_PYTHON_INSTALL_DIR": str(tmp_path / "uv-pythons"), "UV_CACHE_DIR": str(tmp_path / "uv-cache"),
              "UV_PYTHON_BIN_DIR": str(tmp_path / "uv-bin"), "UV_NO_CONFIG": "1"}
    done = subprocess.run([uv, "python", "install", HOST_VERSION, "--python-downloads-json-url", str(out)],
                          env=uv_env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert served.handler.hits.get(dist.glob("*.tar.gz").__next__().name) == 1  # it came from our server
    python = tmp_path / "uv-pythons" / f"cpython-{HOST_VERSION}-linux-x86_64-gnu" / "bin" / f"python{MINOR}"
    ran = subprocess.run([str(python), "-c", "import sys, ssl; print(sys.version.split()[0])"], capture_output=True, text=True)
    assert ran.stdout.strip() == HOST_VERSION
