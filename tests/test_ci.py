"""CI: the matrix, the generated workflows and the linters that check them."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from relocpy import ci
from relocpy.errors import UsageError
from relocpy.paths import project_root
from relocpy.recipes import load_recipes, supported_variants, unbuildable_reason

ROOT = project_root()
WORKFLOWS = ROOT / ".github" / "workflows"
BIN = Path(sys.executable).parent
PIN_RE = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+(\.\d+)*$")


@pytest.fixture(scope="module")
def settings():
    return ci.load_settings(ROOT / "ci")


@pytest.fixture(scope="module")
def recipes():
    return load_recipes()


def load_workflow(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def tool(name: str) -> str:
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if not found:
        pytest.skip(f"{name} is not installed (pip install -e '.[test]')")
    return found


def copy_tree(tmp_path: Path) -> Path:
    for part in ("ci", "recipes", ".github"):
        shutil.copytree(ROOT / part, tmp_path / part)
    return tmp_path


def relocpy(*args: str, root: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "relocpy", *args], capture_output=True, text=True,
        env={"RELOCPY_ROOT": str(root), "PATH": str(BIN) + ":/usr/bin:/bin", "PYTHONPATH": str(ROOT / "tools")},
    )


# --- generated workflows --------------------------------------------------------


def test_committed_workflows_match_what_the_templates_render():
    rendered = ci.render_workflows(ROOT)
    assert set(rendered) == {"build.yml", "release.yml"}
    for name, text in rendered.items():
        assert (WORKFLOWS / name).read_text() == text, f"{name} drifted: run `relocpy ci generate`"


def test_check_names_the_drifted_file(tmp_path):
    root = copy_tree(tmp_path)
    ci.check_workflows(root)
    release = root / ".github" / "workflows" / "release.yml"
    release.write_text(release.read_text() + "# edited by hand\n")
    with pytest.raises(ci.WorkflowDrift, match=r"release\.yml differs"):
        ci.check_workflows(root)
    result = relocpy("ci", "generate", "--check", root=root)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "release.yml" in result.stderr


def test_generate_writes_missing_workflows_and_then_check_passes(tmp_path):
    root = copy_tree(tmp_path)
    shutil.rmtree(root / ".github")
    changed = ci.write_workflows(root)
    assert sorted(p.name for p in changed) == ["build.yml", "release.yml"]
    ci.check_workflows(root)
    assert ci.write_workflows(root) == []


def test_settings_refuse_a_shard_over_githubs_limit(tmp_path):
    root = copy_tree(tmp_path)
    path = root / "ci" / "settings.toml"
    path.write_text(path.read_text().replace("shard_size = 256", "shard_size = 300"))
    with pytest.raises(ci.CiError, match=r"matrix\.shard_size"):
        ci.load_settings(root / "ci")


def test_every_action_is_pinned_by_full_sha_with_a_version_comment():
    uses = [
        line.split("uses:", 1)[1].strip()
        for name in ("build.yml", "release.yml")
        for line in (WORKFLOWS / name).read_text().splitlines()
        if line.strip().startswith(("uses:", "- uses:"))
    ]
    assert len(uses) > 8
    for ref in uses:
        assert ref.startswith("./") or PIN_RE.match(ref), ref


def iter_jobs():
    for name in ("build.yml", "release.yml"):
        for job_id, job in load_workflow(name)["jobs"].items():
            yield name, job_id, job


def test_permissions_are_minimal_and_granted_per_job():
    for name in ("build.yml", "release.yml"):
        assert load_workflow(name)["permissions"] == {}
    for name, job_id, job in iter_jobs():
        assert "permissions" in job, f"{name}: {job_id} has no permissions block"
        writes = {k for k, v in job["permissions"].items() if v == "write"}
        if (name, job_id) == ("release.yml", "publish"):
            assert writes == {"id-token", "attestations"}
        else:
            assert writes == set(), f"{name}: {job_id} asks for {writes}"


def test_checkouts_do_not_persist_credentials_and_runs_hold_no_expressions():
    for name, job_id, job in iter_jobs():
        for step in job.get("steps", []):
            if "actions/checkout@" in step.get("uses", ""):
                assert step["with"]["persist-credentials"] is False, f"{name}: {job_id}"
            assert "${{" not in step.get("run", ""), f"{name}: {job_id}: {step.get('name')}"


def test_pull_request_jobs_see_no_secrets_and_release_is_gated():
    build = load_workflow("build.yml")
    assert "pull_request" in build[True]  # YAML 1.1 reads the key `on` as True
    assert "secrets." not in (WORKFLOWS / "build.yml").read_text()
    release = load_workflow("release.yml")
    assert list(release[True]) == ["workflow_dispatch"]
    assert release["jobs"]["publish"]["environment"] == "release"
    assert release["jobs"]["build"]["uses"] == "./.github/workflows/build.yml"


def test_workflows_run_the_same_commands_as_the_local_tasks(settings):
    build = (WORKFLOWS / "build.yml").read_text()
    release = (WORKFLOWS / "release.yml").read_text()
    for step in ci.cell_steps(settings).values():
        assert step.shell in build, step.shell
    for step in ci.release_steps(settings).values():
        assert step.shell in release, step.shell
    # The image and its suite come from the matrix cell, that is from the target's recipe.
    assert 'relocpy image bootstrap --suite "$IMAGE_SUITE" --tag "$IMAGE"' in build
    assert "IMAGE: ${{ matrix.image }}" in build and "IMAGE_SUITE: ${{ matrix.image-suite }}" in build
    assert "relocpy ci matrix --json" in build


def test_release_builds_restore_nothing_from_a_cache_but_sources():
    """Sources are pinned by the recipes and hashed at each use; a built tree
    is checked only against a digest kept in the same cache, and a cached image
    not at all: a release build (build.yml called from the dispatched release)
    must restore neither."""
    restored = []
    for job in load_workflow("build.yml")["jobs"].values():
        for step in job.get("steps", []):
            if step.get("uses", "").startswith("actions/cache@"):
                restored.append(step["with"]["path"].split())
                if step["with"]["path"] != ".relocpy-cache/sources":
                    assert "github.event_name != 'workflow_dispatch'" in step.get("if", ""), step
    assert [".relocpy-cache/sources"] in restored and [".relocpy-cache/deps"] in restored


def test_every_docker_cell_builds_from_its_targets_image(recipes, settings):
    cells = ci.all_cells(recipes, settings)
    assert cells
    for cell in cells:
        target = recipes.targets[cell.target]
        assert cell.builder == target.runner
        if cell.docker:
            assert (cell.image, cell.image_suite) == (target.image, target.image_suite) != ("", "")


def test_build_declares_one_job_per_shard(settings):
    jobs = load_workflow("build.yml")["jobs"]
    shard_jobs = sorted(j for j in jobs if j.startswith("build-"))
    assert shard_jobs == [f"build-{i}" for i in range(settings.matrix.max_shards)]
    outputs = jobs["matrix"]["outputs"]
    for i in range(settings.matrix.max_shards):
        assert f"shard-{i}" in outputs
        assert jobs[f"build-{i}"]["strategy"]["matrix"] == f"${{{{ fromJSON(needs.matrix.outputs.shard-{i}) }}}}"


# --- linters ---------------------------------------------------------------------------


def test_actionlint_passes_on_the_workflows():
    actionlint = tool("actionlint")
    result = subprocess.run([actionlint, "-no-color", *sorted(map(str, WORKFLOWS.glob("*.yml")))],
                            capture_output=True, text=True, env={"PATH": f"{BIN}:/usr/bin:/bin"})
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_does_catch_an_injection(tmp_path):
    actionlint = tool("actionlint")
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n"
        "      - run: echo ${{ github.event.head_commit.message }}\n"
    )
    result = subprocess.run([actionlint, "-no-color", str(bad)], capture_output=True, text=True)
    assert result.returncode == 1 and "untrusted" in result.stdout


def zizmor_findings(path: Path) -> list[dict]:
    zizmor = tool("zizmor")
    result = subprocess.run([zizmor, "--offline", "--format", "json", str(path)], capture_output=True, text=True)
    assert result.stdout.strip(), result.stderr
    return json.loads(result.stdout)


def test_zizmor_finds_nothing_of_high_severity():
    findings = zizmor_findings(WORKFLOWS)
    high = [f["ident"] for f in findings if f["determinations"]["severity"] == "High"]
    assert high == []


def test_zizmor_does_flag_a_bad_workflow(tmp_path):
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text(
        "on: pull_request_target\npermissions: {}\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n"
        "      - run: echo ${{ github.event.pull_request.title }}\n"
    )
    severities = {f["determinations"]["severity"] for f in zizmor_findings(bad)}
    assert "High" in severities


# --- the matrix ----------------------------------------------------------------------


def test_matrix_covers_every_buildable_target_python_and_variant(recipes, settings):
    matrix = ci.build_matrix(recipes, settings, "push", "20260101")
    got = {(c.target, c.python, c.variant) for c in matrix.cells}
    want = {
        (triple, version, variant)
        for triple, target in recipes.targets.items() if target.buildable
        for version, python in recipes.pythons.items()
        for variant in supported_variants(recipes, python)
        if not unbuildable_reason(target, variant.split("+"))
    }
    assert want and got == want
    assert len(matrix.cells) == len(got)
    unbuildable = {t for t, target in recipes.targets.items() if not target.buildable}
    assert not unbuildable & {c.target for c in matrix.cells}


def test_linux_cells_build_in_docker_on_ubuntu(recipes, settings):
    for cell in ci.build_matrix(recipes, settings, "push", "1").cells:
        if cell.os == "linux":
            assert (cell.runs_on, cell.builder, cell.docker) == ("ubuntu-24.04", "docker", True)


def test_pull_requests_build_the_small_subset(recipes, settings):
    full = ci.build_matrix(recipes, settings, "push", "1").cells
    subset = ci.build_matrix(recipes, settings, "pull_request", "1").cells
    assert 0 < len(subset) < len(full)
    assert set(subset) <= set(full)
    assert {c.variant for c in subset} == set(settings.pull_request.variants)
    assert all(c.python.startswith("3.13.") for c in subset)


def test_unknown_pull_request_python_is_one_clear_error(recipes, settings):
    bad = settings.model_copy(update={"pull_request": ci.SubsetSettings(pythons=["2.7"])})
    with pytest.raises(ci.CiError, match=r"pull_request\.pythons: unknown python '2\.7'"):
        ci.build_matrix(recipes, bad, "pull_request", "1")


def synthetic_recipes(recipes, n_targets: int = 24):
    """Many buildable targets on every OS and several pythons: well over 256 cells."""
    base_target = next(iter(recipes.targets.values()))
    base_python = recipes.pythons["3.13.15"]
    oses = [("linux", "x86_64"), ("linux", "aarch64"), ("macos", "aarch64"), ("windows", "x86_64")]
    targets = {}
    for i in range(n_targets):
        os_name, arch = oses[i % len(oses)]
        triple = f"{arch}-synthetic{i}-{os_name}"
        targets[triple] = base_target.model_copy(update={"triple": triple, "os": os_name, "arch": arch,
                                                         "buildable": True, "toolchain": "gcc",
                                                         "runner": "docker" if os_name == "linux" else "native"})
    pythons = {v: base_python.model_copy(update={"version": v}) for v in ("3.11.9", "3.12.9", "3.13.15", "3.14.1")}
    return recipes.model_copy(update={"targets": targets, "pythons": pythons})


def test_sharding_keeps_every_matrix_within_githubs_limit(recipes, settings):
    big = synthetic_recipes(recipes)
    roomy = settings.model_copy(update={"matrix": ci.MatrixSettings(shard_size=256, max_shards=8)})
    matrix = ci.build_matrix(big, roomy, "push", "1")
    cells = matrix.cells
    assert len(cells) > 2 * 256
    assert len(matrix.shards) == -(-len(cells) // 256)
    assert all(0 < len(s) <= 256 for s in matrix.shards)
    assert len(set(cells)) == len(cells) == len(ci.all_cells(big, roomy))
    outputs = ci.github_outputs(matrix, 8).splitlines()
    shard_lines = [line for line in outputs if line.startswith("shard-")]
    assert len(shard_lines) == 8
    sizes = [len(json.loads(line.split("=", 1)[1])["include"]) for line in shard_lines]
    assert sum(sizes) == len(cells) and max(sizes) <= 256
    assert f"shards={len(matrix.shards)}" in outputs


def test_runner_labels_follow_the_target_os(recipes, settings):
    big = synthetic_recipes(recipes, n_targets=4)
    labels = {(c.os, c.runs_on, c.builder) for c in ci.all_cells(big, settings)}
    assert labels == {
        ("linux", "ubuntu-24.04", "docker"),
        ("linux", "ubuntu-24.04-arm", "docker"),
        ("macos", "macos-15", "native"),
        ("windows", "windows-2022", "native"),
    }


def test_too_many_cells_for_the_declared_shards_is_an_error(recipes, settings):
    big = synthetic_recipes(recipes)
    tight = settings.model_copy(update={"matrix": ci.MatrixSettings(shard_size=256, max_shards=1)})
    with pytest.raises(ci.CiError, match="raise matrix.max_shards"):
        ci.build_matrix(big, tight, "push", "1")


# --- steps and the command line ------------------------------------------------------------


def test_steps_render_quoted_for_bash_and_resolve_locally(tmp_path):
    step = ci.Step(name="x", argv=["relocpy", "validate", "$DIST/cpython-*.tar.gz", "--tag", "$TAG", "a b"])
    assert step.shell == "relocpy validate \"$DIST\"/cpython-*.tar.gz --tag \"$TAG\" 'a b'"
    (tmp_path / "cpython-b.tar.gz").touch()
    (tmp_path / "cpython-a.tar.gz").touch()
    (tmp_path / "cpython-a.tar.gz.json").touch()
    argv = step.resolve({"DIST": str(tmp_path), "TAG": "t; rm -rf /"})
    assert argv == ["relocpy", "validate", str(tmp_path / "cpython-a.tar.gz"), str(tmp_path / "cpython-b.tar.gz"),
                    "--tag", "t; rm -rf /", "a b"]
    with pytest.raises(ci.CiError, match=r"\$TAG"):
        step.resolve({"DIST": "d"})


def test_build_tag_is_checked(tmp_path):
    assert ci.resolve_build_tag("20261124", ROOT) == "20261124"
    assert re.fullmatch(r"\d{8}", ci.resolve_build_tag(None, ROOT))
    with pytest.raises(UsageError, match="bad build tag"):
        ci.resolve_build_tag("1.0+x", ROOT)


def test_cli_matrix_json_and_github_output(tmp_path):
    out = tmp_path / "github_output"
    result = relocpy("ci", "matrix", "--json", "--event", "pull_request", "--build-tag", "t1",
                     "--github-output", str(out))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["event"] == "pull_request" and data["build_tag"] == "t1" and data["cells"] >= 1
    written = dict(line.split("=", 1) for line in out.read_text().splitlines())
    assert written["build-tag"] == "t1" and written["shards"] == "1"
    assert json.loads(written["shard-0"])["include"] == data["shards"][0]["include"]
    assert json.loads(written["shard-1"])["include"] == []


def test_cli_bad_event_is_one_line_exit_2():
    result = relocpy("ci", "matrix", "--event", "schedule")
    assert result.returncode == 2
    assert result.stderr.strip() == "relocpy: error: ci matrix: --event: unknown value 'schedule' (known: push, pull_request)"


def fake_relocpy(tmp_path: Path) -> tuple[Path, Path]:
    """A `relocpy` on PATH that records each call, one argv per line."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    script = bin_dir / "relocpy"
    script.write_text(f'#!/bin/sh\nprintf "%s|" "$@" >> {calls}\necho >> {calls}\n')
    script.chmod(0o755)
    return bin_dir, calls


def test_release_task_runs_the_release_steps_in_order(tmp_path):
    bin_dir, calls = fake_relocpy(tmp_path)
    dist = tmp_path / "dist"
    dist.mkdir()
    for name in ("cpython-3.13.15+1-manylinux_2_17_x86_64-install_only.tar.gz", "cpython-x-full.tar.zst"):
        (dist / name).touch()
        (dist / f"{name}.json").touch()
    result = subprocess.run(
        [sys.executable, "-m", "relocpy", "ci", "release", "--dist", str(dist), "--base-url", "https://h/p",
         "--sign", "/k/key.pem", "--to", "s3://bucket/prefix"],
        capture_output=True, text=True, cwd=tmp_path,
        env={"RELOCPY_ROOT": str(ROOT), "PATH": f"{bin_dir}:{BIN}:/usr/bin:/bin", "PYTHONPATH": str(ROOT / "tools")},
    )
    assert result.returncode == 0, result.stderr
    lines = calls.read_text().splitlines()
    assert lines == [
        f"ci|emulation|--dist|{dist}|",
        f"validate|{dist}|",
        f"index|build|{dist}|--base-url|https://h/p|--sign|/k/key.pem|--previous|s3://bucket/prefix|",
        f"publish|{dist}|--to|s3://bucket/prefix|--sign|/k/key.pem|",
    ]


def test_a_failing_step_stops_the_run_with_one_error(tmp_path, settings):
    bin_dir, calls = fake_relocpy(tmp_path)
    (bin_dir / "relocpy").write_text("#!/bin/sh\necho boom\nexit 3\n")
    steps = ci.cell_steps(settings)
    values = {"PYTHON": "3.13.15", "TARGET": "t", "VARIANT": "noopt", "BUILDER": "docker", "BUILD_TAG": "1",
              "DIST": str(tmp_path / "dist")}
    env_path = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", env_path["PATH"])
        with pytest.raises(ci.RelocpyError, match=r"Prepare emulation failed \(exit 3\)"):
            ci.run_steps([steps["emulation"], steps["build"]], values, tmp_path / "logs")
    assert (tmp_path / "logs" / "prepare-emulation.log").exists()
    assert not (tmp_path / "logs" / "build.log").exists()


def test_a_template_using_an_unpinned_action_is_one_clear_error(tmp_path):
    root = copy_tree(tmp_path)
    template = root / "ci" / "templates" / "build.yml.j2"
    template.write_text(template.read_text().replace('action("cache")', 'action("not-pinned")', 1))
    with pytest.raises(ci.CiError, match=r"\[actions\.not-pinned\] missing"):
        ci.render_workflows(root)
    result = relocpy("ci", "generate", root=root)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
