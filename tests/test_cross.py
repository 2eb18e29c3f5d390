"""Cross-built targets (targets.toml: build_on): the plan's build-machine
interpreter, the cross configure of every script, what PGO refuses, and the
checks that refuse a host which cannot run the target's programs."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from relocpy import ci, emulation
from relocpy.deps import dependency_step
from relocpy.cpython import BuiltPython, cpython_step
from relocpy.errors import UnknownNameError, UsageError
from relocpy.fetch import FetchedSource
from relocpy.models import SourceFile
from relocpy.paths import project_root
from relocpy.plan import resolve_plan
from relocpy.recipes import check_recipes, load_recipes
from relocpy.steps import StepResult
from relocpy.toolchain import toolchain_env
from support import relocpy

ROOT = project_root()
CROSS = "aarch64-unknown-linux-gnu"
NATIVE = "x86_64-unknown-linux-gnu"
AUTOTOOLS = {"xz", "libffi", "expat", "mpdecimal", "libedit", "libuuid", "ncurses", "sqlite"}


@pytest.fixture(scope="module")
def recipes():
    return load_recipes()


def fake_source(tmp_path: Path) -> FetchedSource:
    """A fetched source for rendering steps (nothing is run)."""
    path = tmp_path / "src.tar.gz"
    path.write_bytes(b"")
    return FetchedSource(component="x", path=path, source=SourceFile(file=path.name, sha256="0" * 64), location="cache")


def test_a_cross_plan_runs_the_build_machines_noopt_build_of_the_same_version(recipes):
    plan = resolve_plan(recipes, "3.13.15", CROSS)
    assert plan.variant.name == "lto"  # the target's default: it has no PGO
    # Equal to the native plan: its steps, cached, are the native build's own.
    assert plan.build_python == resolve_plan(recipes, "3.13.15", NATIVE, "noopt")
    assert resolve_plan(recipes, "3.13.15", NATIVE).build_python is None


def test_pgo_is_refused_for_a_cross_target_with_the_reason(recipes):
    with pytest.raises(UnknownNameError, match=r"PGO trains by running the build, and aarch64-unknown-linux-gnu "
                                               r"is cross-built on x86_64-unknown-linux-gnu \(it builds: noopt, lto,"):
        resolve_plan(recipes, "3.13.15", CROSS, "pgo+lto")


def test_every_autotools_dependency_configures_for_the_target_and_only_when_cross(recipes, tmp_path):
    cross, native = resolve_plan(recipes, "3.13.15", CROSS), resolve_plan(recipes, "3.13.15", NATIVE)
    for cross_dep, native_dep in zip(cross.dependencies, native.dependencies):
        name = cross_dep.dependency.name
        cross_text = dependency_step(cross, cross_dep, fake_source(tmp_path), []).run.text
        native_text = dependency_step(native, native_dep, fake_source(tmp_path), []).run.text
        assert "--host=" not in native_text, name
        if name in AUTOTOOLS:
            assert f"--build={NATIVE} --host={CROSS}" in cross_text, name
        elif name == "openssl":
            assert "./Configure linux-aarch64" in cross_text


def test_the_cross_cpython_script_is_given_the_build_python(recipes, tmp_path):
    plan = resolve_plan(recipes, "3.11.2", CROSS, "noopt")
    # (a stand-in result of the build python's step: only its key and output are read)
    host = BuiltPython(step=StepResult(name="host", key="k" * 64, output=tmp_path / "host", log=tmp_path / "log",
                                       cached=True, duration=0.0))
    step = cpython_step(plan, fake_source(tmp_path), [], 2, build_python=host)
    assert step.given["BUILD_PYTHON"] == host.step
    text = step.run.text
    assert f"--build={NATIVE} --host={CROSS}" in text
    assert 'build_python="$BUILD_PYTHON/opt/relocpy-build-prefix/python/bin/python3.11"' in text
    assert '--with-build-python="$build_python"' in text and "install_vars=(ENSUREPIP=no)" in text
    assert 'export _PYTHON_HOST_PLATFORM="linux-aarch64"' in text  # per target, not the recipe's
    native = cpython_step(resolve_plan(recipes, "3.11.2", NATIVE, "noopt"), fake_source(tmp_path), [], 2).run.text
    assert "--with-build-python" not in native and 'export _PYTHON_HOST_PLATFORM="linux-x86_64"' in native
    assert re.search(r"^cross_flags=\(\)$", native, re.M) and re.search(r"^install_vars=\(\)$", native, re.M)
    assert "pip_wheel" not in native


def test_a_cross_target_builds_in_its_build_machines_builder_image(recipes):
    """One base image, one builder: the build python a cross build makes in
    its builder then has the keys of the native build of the same plan."""
    from relocpy.runners.docker import builder_tag, render_dockerfile

    for target in (CROSS, "x86_64-unknown-linux-musl", "aarch64-unknown-linux-musl"):
        native = recipes.targets[recipes.targets[target].build_on]
        assert builder_tag(render_dockerfile(recipes.targets[target])) == builder_tag(render_dockerfile(native)), target


def test_a_cross_target_must_be_built_on_a_native_buildable_target(tmp_path):
    recipes_dir = tmp_path / "recipes"
    shutil.copytree(ROOT / "recipes", recipes_dir)
    targets = recipes_dir / "targets.toml"
    targets.write_text(targets.read_text().replace('build_on = "x86_64-unknown-linux-gnu"', 'build_on = "riscv64-unknown-linux-gnu"', 1))
    assert check_recipes(load_recipes(recipes_dir)) == [
        "targets.toml: [aarch64-unknown-linux-gnu].build_on: 'riscv64-unknown-linux-gnu' is not a natively built, "
        "buildable linux target"]


# --- can this host run the target's programs? ---------------------------------------------


def aarch64_policy(recipes, **run):
    platform = recipes.policies["manylinux_2_17_aarch64"]
    return platform.model_copy(update={"run": platform.run.model_copy(update=run)})


def test_a_host_without_qemu_registered_is_told_what_to_install(recipes, tmp_path, monkeypatch):
    monkeypatch.setattr(emulation, "BINFMT_MISC", tmp_path)  # a kernel that lists no emulator
    with pytest.raises(UsageError) as err:
        emulation.require_runnable(aarch64_policy(recipes))
    assert str(err.value).startswith("manylinux_2_17_aarch64: running aarch64 programs here needs qemu-aarch64")
    assert "apt-get install qemu-user-static, then `relocpy ci emulation` registers it" in str(err.value)
    (tmp_path / "qemu-aarch64").write_text("disabled\n")
    with pytest.raises(UsageError, match="is missing or disabled"):
        emulation.require_runnable(aarch64_policy(recipes))
    # what `relocpy ci emulation` would do about it: the emulator's package, and registering it
    lack = emulation.missing(aarch64_policy(recipes))
    assert lack.packages == ("qemu-user-static",) and lack.register == "qemu-aarch64"
    assert emulation.missing(aarch64_policy(recipes, root="/nonexistent")).packages == (
        "qemu-user-static", "libc6-arm64-cross", "libgcc-s1-arm64-cross")


def test_relocpy_ci_emulation_enables_a_disabled_emulator_again(recipes, env):
    """The real kernel interface: the step the generated workflows run for a
    cross-built cell turns this host's qemu-aarch64 entry back on."""
    entry = emulation.BINFMT_MISC / "qemu-aarch64"
    entry.write_text("0")
    try:
        assert entry.read_text().startswith("disabled")
        with pytest.raises(UsageError, match="is missing or disabled"):
            emulation.require_runnable(aarch64_policy(recipes))
        done = relocpy("ci", "emulation", "--target", CROSS, env=env)
        assert done.returncode == 0, done.stderr
        assert "manylinux_2_17_aarch64: runs here (qemu-aarch64 over /usr/aarch64-linux-gnu)" in done.stderr
        assert entry.read_text().startswith("enabled")
    finally:
        entry.write_text("1")


def test_only_cross_cells_prepare_emulation_and_the_release_prepares_for_its_archives(recipes):
    settings = ci.load_settings(ROOT / "ci")
    cells = {cell.target: cell for cell in ci.all_cells(recipes, settings)}
    assert cells[CROSS].emulated and cells["x86_64-unknown-linux-musl"].emulated and not cells[NATIVE].emulated
    build = (ROOT / ".github" / "workflows" / "build.yml").read_text()
    prepare = "      - name: Prepare emulation\n        if: matrix.emulated\n        run: relocpy ci emulation --target \"$TARGET\"\n"
    assert build.count(prepare) == build.count("      - name: Build\n") == 2  # one per shard job, before its build
    assert build.index(prepare) < build.index("      - name: Build\n")
    release = (ROOT / ".github" / "workflows" / "release.yml").read_text()
    assert release.index('run: relocpy ci emulation --dist "$DIST"') < release.index("- name: Validate again")


def test_relocpy_ci_emulation_needs_something_to_prepare_for(env):
    done = relocpy("ci", "emulation", env=env)
    assert done.returncode == 2 and done.stderr == "relocpy: error: name a --target or a --dist whose programs must run here\n"


def test_a_host_without_the_foreign_root_is_told_which_packages_install_it(recipes, tmp_path):
    with pytest.raises(UsageError, match=r"needs a glibc root at /nonexistent: apt-get install libc6-arm64-cross "
                                         r"libgcc-s1-arm64-cross$"):
        emulation.require_runnable(aarch64_policy(recipes, root="/nonexistent"))


def test_this_host_runs_aarch64_programs(recipes, tmp_path):
    """What the cross end-to-end test and CI rely on (tools/install-host-deps)."""
    policy = aarch64_policy(recipes)
    emulation.require_runnable(policy)
    assert emulation.emulation_env(policy) == {"QEMU_LD_PREFIX": "/usr/aarch64-linux-gnu"}
    program = tmp_path / "hello"
    compiler = emulation.extension_compiler(policy)
    (tmp_path / "hello.c").write_text('#include <stdio.h>\nint main(void) { puts("aarch64 here"); return 0; }\n')

    env = {"PATH": "/usr/bin:/bin", "ZIG_GLOBAL_CACHE_DIR": str(tmp_path / "zig"), "ZIG_LOCAL_CACHE_DIR": str(tmp_path / "zig")}
    subprocess.run([*compiler, str(tmp_path / "hello.c"), "-o", str(program)], check=True, env=env)
    assert program.read_bytes()[18] == 0xB7  # e_machine: EM_AARCH64
    out = subprocess.run([str(program)], capture_output=True, text=True, env={**env, **emulation.emulation_env(policy)})
    assert out.stdout == "aarch64 here\n", out


def test_install_host_deps_installs_every_policys_emulation(recipes):
    script = (ROOT / "tools" / "install-host-deps").read_text()
    for platform in recipes.policies.values():
        for package in platform.run.packages:
            assert re.search(rf"\s{re.escape(package)}\s", script), package
        if platform.run.how == "emulator" and platform.run.root:
            assert platform.run.emulator in script


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_a_musl_program_is_linked_dynamically_and_runs_with_no_glibc(recipes, arch, tmp_path):
    """zig links musl programs statically unless told: the wrappers make the
    interpreter dynamic (it loads extension modules). It then runs through the
    musl loader alone (for aarch64, under qemu), the policy's way."""
    target = recipes.targets[f"{arch}-unknown-linux-musl"]
    platform = recipes.policies[f"musllinux_1_2_{arch}"]
    emulation.require_runnable(platform)
    cache = {"ZIG_GLOBAL_CACHE_DIR": str(tmp_path / "zig"), "ZIG_LOCAL_CACHE_DIR": str(tmp_path / "zig")}
    env = {"PATH": "/usr/bin:/bin", **toolchain_env(target), **cache}
    (tmp_path / "hello.c").write_text('#include <stdio.h>\nint main(void) { puts("musl here"); return 0; }\n')
    program = tmp_path / "hello"
    subprocess.run([env["CC"], str(tmp_path / "hello.c"), "-o", str(program)], check=True, env=env)
    with program.open("rb") as handle:
        interp = next(s for s in ELFFile(handle).iter_segments() if s["p_type"] == "PT_INTERP")
        assert interp.get_interp_name() == platform.loader
    done = subprocess.run([str(program)], capture_output=True, text=True, env={**cache, **emulation.emulation_env(platform)})
    assert done.stdout == "musl here\n", done


def test_relocation_removes_the_work_directory_of_the_build_that_made_the_cpython_entry(tmp_path):
    """The native build reusing the CPython entry its cross build made (as the
    build python) removes that build's work directory, not only its own."""
    from relocpy.relocate import build_machine_paths

    other = tmp_path / "work" / "cross-plan" / "cpython-3.13.15-noopt"
    built = BuiltPython(step=StepResult(name="cpython", key="k" * 64, output=tmp_path / "entry" / "output",
                                        log=tmp_path / "log", cached=True, duration=1, made_in=other))
    paths = build_machine_paths(built, [], tmp_path / "work" / "native-plan")
    assert str(other) in paths and str(tmp_path / "work" / "native-plan") in paths
