"""Packaging: the README's commands on a Debian system Python, the wheel's
contents and metadata, the extras and their one-line errors, tasks.py."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from relocpy import ci
from relocpy.recipes import load_recipes
from support import REPO, one_error_line, relocpy

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SYSTEM_PYTHON = Path("/usr/bin/python3")
# The modules a consumer install has not got: each extra's, by the extra that brings it.
EXTRA_MODULES = {"ziglang": "build", "elftools": "build", "jinja2": "build", "zstandard": "build",
                 "boto3": "s3", "botocore": "s3"}
DISTRIBUTIONS = {"elftools": "pyelftools", "botocore": "boto3"}  # module -> distribution, where they differ


def readme_commands() -> list[list[str]]:
    """The README's two commands, each cut at `&&`."""
    section = (REPO / "README.md").read_text().split("## Two commands", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)\n```", section, re.DOTALL)
    assert len(blocks) == 2, blocks
    return [[part.strip() for part in block.split("&&")] for block in blocks]


def source_copy(tmp_path: Path) -> Path:
    """What a build of the project reads, copied: building writes egg-info and build dirs."""
    src = tmp_path / "src"
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "tools" / "relocpy", src / "tools" / "relocpy",
                    ignore=shutil.ignore_patterns("__pycache__"), symlinks=True)
    return src


def pip(python: Path | str, *args: str) -> None:
    # Build isolation fetches setuptools>=77 through pip's configured index (or its cache).
    result = subprocess.run([str(python), "-m", "pip", "--disable-pip-version-check", *args],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    tmp = tmp_path_factory.mktemp("wheel")
    pip(sys.executable, "wheel", "--no-deps", "-q", "-w", str(tmp / "out"), str(source_copy(tmp)))
    [built] = (tmp / "out").glob("relocpy-*.whl")
    return zipfile.ZipFile(built)


# --- finding 1: the README's commands on Debian 12's Python, as root ----------------------


def test_readme_commands_install_into_the_venv_not_the_system_python():
    build, test = readme_commands()
    for command in (build, test):
        assert command[0] == "tools/install-host-deps"
        for part in command[1:]:
            assert part.split()[0].startswith(".venv/bin/"), f"{part!r} would use the system's pip or python (PEP 668)"
    assert build[1] == ".venv/bin/pip install -e '.[build]'" and build[2].startswith(".venv/bin/relocpy build ")
    assert test[1:] == [".venv/bin/pip install -e '.[test]'", ".venv/bin/python -m pytest"]


def test_install_host_deps_makes_the_venv_with_the_system_python():
    script = (REPO / "tools" / "install-host-deps").read_text()
    packages = script.split("packages=(", 1)[1].split(")", 1)[0].split()
    assert {"python3", "python3-venv"} <= set(packages)
    assert "/usr/bin/python3 -m venv .venv" in script
    assert "/.venv/" in (REPO / ".gitignore").read_text().split()


def test_ci_runs_the_readme_test_command():
    _, test = readme_commands()
    lines = [line for line in (REPO / ".ci" / "run").read_text().splitlines() if line and not line.startswith(("#", "set ", "cd ", "export "))]
    assert [line.replace(" -q", "") for line in lines] == test


@pytest.mark.skipif(not SYSTEM_PYTHON.exists() or subprocess.run([SYSTEM_PYTHON, "-c", "import ensurepip"]).returncode,
                    reason="needs the system Python with venv (Debian's python3-venv)")
def test_readme_install_works_in_a_venv_of_the_system_python(tmp_path):
    """`.venv/bin/pip install -e .` into a venv of /usr/bin/python3, as the README
    does; the dependencies come from this test's environment (no download)."""
    src, venv = source_copy(tmp_path), tmp_path / ".venv"
    subprocess.run([SYSTEM_PYTHON, "-m", "venv", venv], check=True, timeout=120)
    pip(venv / "bin" / "python", "install", "-q", "--no-deps", "-e", str(src))
    deps = subprocess.run([sys.executable, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    [site] = (venv / "lib").glob("python3*/site-packages")
    (site / "zz-test-deps.pth").write_text(deps + "\n")
    alone = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the venv's relocpy, not tools/
    result = subprocess.run([venv / "bin" / "relocpy", "keys", "generate", "--out", tmp_path / "k" / "key"],
                            capture_output=True, text=True, timeout=120, env=alone)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ed25519:")
    where = subprocess.run([venv / "bin" / "python", "-c", "import relocpy; print(relocpy.__file__)"],
                           capture_output=True, text=True, check=True, env=alone).stdout
    assert where.startswith(str(src / "tools" / "relocpy"))


# --- finding 2: pyproject and the wheel --------------------------------------------------


def test_build_backend_can_build_an_spdx_license_string():
    """PEP 639 (`license = "Apache-2.0"`, license-files) needs setuptools 77."""
    [setuptools] = [Requirement(r) for r in PYPROJECT["build-system"]["requires"] if r.startswith("setuptools")]
    assert Version("76.9") not in setuptools.specifier and Version("77.0") in setuptools.specifier
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    assert PYPROJECT["project"]["license-files"] == ["LICENSE"]
    assert "Apache License" in (REPO / "LICENSE").read_text()


def test_requires_python_admits_debian_12():
    """The code runs on 3.11.2: no tarfile filters (3.11.4); archives are unpacked
    by relocpy's own checked unpacker (unpack.py), for install and validation alike."""
    spec = Requirement(f"x{PYPROJECT['project']['requires-python']}").specifier
    assert Version("3.11.2") in spec and Version("3.10.99") not in spec
    uses = [p for p in (REPO / "tools").rglob("*.py") if "extractall(" in p.read_text()]
    assert uses == []


def test_wheel_holds_the_license_types_marker_and_every_data_file_of_the_package(wheel):
    names = set(wheel.namelist())
    assert "relocpy-0.1.0.dist-info/licenses/LICENSE" in names
    package = REPO / "tools" / "relocpy"
    files = [p for p in package.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    expected = {"relocpy/" + p.relative_to(package).as_posix() for p in files}
    assert {"relocpy/py.typed", "relocpy/checks/probe.c", "relocpy/checks/with_system_ca.sh"} <= expected
    assert expected - names == set()
    mode = wheel.getinfo("relocpy/checks/with_system_ca.sh").external_attr >> 16
    assert mode & 0o111, "validate runs with_system_ca.sh directly"


def test_wheel_metadata_keeps_the_build_toolchain_out_of_a_consumer_install(wheel):
    [name] = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    metadata = wheel.read(name).decode()
    assert "License-Expression: Apache-2.0" in metadata
    requires = [Requirement(line.split(": ", 1)[1]) for line in metadata.splitlines() if line.startswith("Requires-Dist: ")]
    core = {r.name for r in requires if r.marker is None}
    extras = {r.name: str(r.marker) for r in requires if r.marker is not None}
    for distribution in ("ziglang", "pyelftools", "jinja2", "zstandard", "boto3"):
        assert distribution not in core
    assert 'extra == "build"' in extras["ziglang"] and 'extra == "s3"' in extras["boto3"]


# --- finding 3: extras, and the one line a missing one gives ---------------------------------


def test_every_gate_names_an_extra_that_brings_its_module():
    optional = {extra: {Requirement(r).name for r in reqs} for extra, reqs in PYPROJECT["project"]["optional-dependencies"].items()}
    gates = re.findall(r'(?:require|Lazy)\("(\w+)", "([\w.]+)"\)', "".join(p.read_text() for p in (REPO / "tools" / "relocpy").rglob("*.py")))
    assert {module for _, module in gates} >= {"ziglang", "jinja2", "zstandard", "boto3", "relocpy.elf"}
    for extra, module in gates:
        top = module.split(".")[0] if module != "relocpy.elf" else "elftools"
        assert DISTRIBUTIONS.get(top, top) in optional[extra], (extra, module)
        assert EXTRA_MODULES[top] == extra
    assert optional["test"] >= {"relocpy"}  # relocpy[build,s3]: the tests use every extra


def blocked(code: str, *modules: str) -> str:
    """Python code that first makes the modules unimportable, as if their extra were not installed."""
    return f"import sys\nfor m in {list(modules or EXTRA_MODULES)!r}: sys.modules[m] = None\n{code}"


def run_python(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


def cli(args: list[str]) -> str:
    return f"import runpy\nsys.argv = ['relocpy', *{args!r}]\nrunpy.run_module('relocpy', run_name='__main__')"


def library(call: str) -> str:
    """Call a library function; print a RelocpyError as the CLI does."""
    return (f"from relocpy.errors import RelocpyError\ntry:\n    {call}\nexcept RelocpyError as exc:\n"
            f"    print(f'relocpy: error: {{exc}}', file=sys.stderr); sys.exit(exc.exit_code)")


@pytest.mark.parametrize(("module", "call"), [
    ("ziglang", "from relocpy.toolchain import zig_dir; zig_dir()"),
    ("boto3", "from relocpy.publish import S3Target; S3Target('s3://bucket/prefix')"),
    ("zstandard", "from pathlib import Path; from relocpy.package import zstandard; zstandard.ZstdCompressor()"),
    ("elftools", "from pathlib import Path; from relocpy.validate import elf; elf.check_tree(Path('.'), [])"),
    ("jinja2", "from relocpy.templates import render; render('cpython.sh.j2')"),
])
def test_a_missing_extra_is_one_line_naming_it(module, call):
    result = run_python(blocked(library(call), module))
    extra = EXTRA_MODULES[module]
    assert result.returncode == 2, result.stderr
    assert one_error_line(result) == (f"relocpy: error: the {module} module is not installed: it comes with "
                                      f"relocpy[{extra}] (pip install 'relocpy[{extra}]')")


def test_a_missing_extra_through_the_cli(tmp_path):
    result = run_python(blocked(cli(["ci", "generate", "--check"])))
    assert result.returncode == 2
    assert "relocpy[build]" in one_error_line(result)
    archive = tmp_path / "cpython-3.13.15+20261124-manylinux_2_17_x86_64-install_only.tar.zst"
    archive.write_bytes(b"\x28\xb5\x2f\xfd" + b"\0" * 64)
    result = run_python(blocked(library(f"from relocpy.unpack import extract; from pathlib import Path; extract(Path({str(archive)!r}), Path({str(tmp_path / 'out')!r}))")))
    assert "the zstandard module is not installed" in one_error_line(result)


def test_help_and_every_module_import_without_any_extra():
    modules = sorted(p.relative_to(REPO / "tools").with_suffix("").as_posix().replace("/", ".")
                     for p in (REPO / "tools" / "relocpy").rglob("*.py")
                     if "checks" not in p.parts and p.name != "__main__.py" and p.stem != "elf")
    result = run_python(blocked(f"import importlib\nfor m in {modules!r}: importlib.import_module(m)\n" + cli(["--help"])))
    assert result.returncode == 0, result.stderr
    assert "install" in result.stdout


def test_the_consumer_side_needs_no_extra(dist, served, signing_key, env, tmp_path):
    """install, list, run and uninstall, with every extra's module unimportable."""
    key, public = signing_key
    relocpy("index", "build", str(dist), "--base-url", served.url, "--sign", str(key), env=env, check=True)
    client = {**env, "RELOCPY_INDEX_URL": served.url + "/index.json", "RELOCPY_TRUSTED_KEYS": public,
              "RELOCPY_INSTALL_DIR": str(tmp_path / "versions")}
    minor = "{}.{}".format(*sys.version_info[:2])
    for args in (["install", minor], ["list"], ["run", minor, "--", "-c", "print('hello')"], ["uninstall", minor]):
        result = run_python(blocked(cli(args)), env=client)
        assert result.returncode == 0, (args, result.stderr)
        if args[0] == "run":
            assert result.stdout.strip() == "hello"


# --- finding 4: tasks.py --------------------------------------------------------------


def invoke(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """invoke with the repository's tasks.py, from cwd (PYTHONPATH=tools made absolute)."""
    path = os.pathsep.join(str(Path(p).resolve()) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p)
    return subprocess.run([sys.executable, "-m", "invoke", "--search-root", str(REPO), *args], capture_output=True,
                          text=True, cwd=cwd, timeout=120, env={**os.environ, "PYTHONPATH": path})


def test_invoke_lists_the_release_managers_flows():
    pytest.importorskip("invoke")
    result = invoke("--list")
    assert result.returncode == 0, result.stderr
    listed = {line.split()[0] for line in result.stdout.splitlines()[1:] if line.startswith("  ") and line.split()}
    assert {"release", "matrix", "bench", "test", "check"} <= listed


def test_invoke_matrix_prints_the_matrix():
    pytest.importorskip("invoke")
    result = invoke("matrix", "--build-tag", "20261124")
    assert result.returncode == 0, result.stderr
    computed = ci.build_matrix(load_recipes(), ci.load_settings(REPO / "ci"), "push", "20261124")
    *cells, summary = result.stdout.splitlines()
    assert len(cells) == len(computed.cells) > 0 and all(line.startswith("shard ") for line in cells)
    assert [line.split()[2:5] for line in cells] == [[c.python, c.target, c.variant] for s in computed.shards for c in s]
    assert summary == f"{len(computed.cells)} cells in {len(computed.shards)} shard(s) for push, build tag 20261124"


def test_invoke_release_runs_the_release_steps_and_stops_at_a_failing_one(tmp_path):
    pytest.importorskip("invoke")
    result = invoke("release", "--base-url", "https://h/p", "--sign", "/no/key", "--to", "/no/where",
                    "--dist", str(tmp_path / "missing"), cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    # the first step (emulation for the archives' targets) reads the missing dist
    assert "\nrelocpy: error: Prepare emulation failed (exit 2)" in result.stderr, result.stderr
    assert (tmp_path / "work" / "logs" / "ci" / "release" / "prepare-emulation.log").is_file()
    assert "Validate again" not in result.stderr
