"""The generated GitHub workflows, executed: their `run:` steps really run
(tests/workflow_runner.py), only what GitHub alone can do is stood in for.

The fast tests check that every `relocpy` command line of the workflows parses
with the real CLI, and that every `matrix.X` the workflows read is a field of
a Cell. The end-to-end test starts from an engine without relocpy images,
runs build.yml's matrix job for a pull request, then twice a release (tags A
and B): build.yml as release.yml calls it (matrix job, then the build job of
the pull request's cell, which bootstraps the base image with the workflow's
own step), and release.yml's publish job to S3 (moto on loopback; what the
bucket holds is then served on loopback, as a CDN in front of it would).
Both releases must verify, the serial go 1 -> 2, the index hold both tags,
and `relocpy install` get each release's interpreter. (Publishing to a
directory is the same step with another --to: tests/test_publish*.py.)

The workspace is a clean clone of this repository's HEAD commit: commit first.
"""

from __future__ import annotations

import calendar
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

from relocpy import ci
from relocpy.cli import parse
from relocpy.recipes import load_recipes
from support import LoopbackServer
from workflow_runner import Executor, Job, Run, StandIns, Workflow, substitute

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = REPO / ".github" / "workflows"
CELL = {"python": "3.13.15", "target": "x86_64-unknown-linux-gnu", "variant": "noopt"}
TAG_A, TAG_B = "20261124", "20261125"
# Both builds share one epoch: the CPython build is keyed on it, so tag B only repackages.
EPOCH = calendar.timegm(time.strptime(TAG_A, "%Y%m%d"))
STOOD_IN = [
    "actions/checkout", "actions/setup-python", "python -m pip install -e .", "actions/cache",
    "actions/upload-artifact", "actions/download-artifact", "aws-actions/configure-aws-credentials",
    "actions/attest-build-provenance",
]


# --- fast: the workflows and the CLI agree ----------------------------------------------


def workflow_texts() -> dict[str, str]:
    return {path.name: path.read_text() for path in sorted(WORKFLOWS.glob("*.yml"))}


def run_scripts() -> list[tuple[str, str, str]]:
    """(workflow, step label, script) of every `run:` step."""
    found = []
    for name in workflow_texts():
        workflow = Workflow(WORKFLOWS / name)
        for job_id, job in workflow.data["jobs"].items():
            for step in job.get("steps", []):
                if "run" in step:
                    found.append((name, f"{job_id}: {step.get('name', step['run'])}", step["run"]))
    return found


def a_cell() -> dict:
    settings = ci.load_settings(REPO / "ci")
    return ci.all_cells(load_recipes(), settings)[0].model_dump(by_alias=True)


def placeholders() -> dict[str, str]:
    """A plausible value for every variable a `relocpy` line of the workflows may use."""
    cell = a_cell()
    return {
        "PYTHON": cell["python"], "TARGET": cell["target"], "VARIANT": cell["variant"], "BUILDER": cell["builder"],
        "IMAGE": cell["image"] or "relocpy-bookworm", "IMAGE_SUITE": cell["image-suite"] or "bookworm",
        "BUILD_TAG": TAG_A, "DIST": "dist", "EVENT": "pull_request", "GITHUB_OUTPUT": "/tmp/output",
        "BASE_URL": "https://downloads.example.invalid/python", "PUBLISH_URL": "s3://bucket/prefix",
        "KEY_FILE": "/tmp/relocpy-signing-key", "IMAGE_CACHE": "/tmp/images",
    }


def relocpy_lines() -> list[tuple[str, str, list[str]]]:
    values = placeholders()
    lines = []
    for workflow, label, script in run_scripts():
        for line in script.splitlines():
            words = shlex.split(line, comments=True)
            if not words or words[0] != "relocpy":
                assert "relocpy " not in line, f"{workflow} {label}: relocpy called other than at a line's start: {line}"
                continue
            argv = []
            for word in words[1:]:
                for name in re.findall(r"\$\{?([A-Z_][A-Z0-9_]*)", word):
                    assert name in values, f"{workflow} {label}: no placeholder for ${name} (add one)"
                argv.append(re.sub(r"\$\{?([A-Z_][A-Z0-9_]*)\}?", lambda m: values[m.group(1)], word))
            lines.append((workflow, label, argv))
    return lines


def test_every_relocpy_line_of_the_workflows_parses_with_the_real_cli():
    lines = relocpy_lines()
    verbs = {" ".join(argv[:2]) for _, _, argv in lines}
    # the lines this test must see, so a broken extraction cannot pass vacuously
    assert {"ci generate", "ci matrix", "ci engine", "image bootstrap", "build --python", "validate dist",
            "index build", "publish dist"} <= verbs, verbs
    for workflow, label, argv in lines:
        try:
            args = parse(argv)
        except SystemExit as exc:  # argparse's own exit (choices)
            pytest.fail(f"{workflow} {label}: `relocpy {shlex.join(argv)}` does not parse (exit {exc.code})")
        except Exception as exc:  # relocpy's UsageFailure
            pytest.fail(f"{workflow} {label}: `relocpy {shlex.join(argv)}` does not parse: {exc}")
        assert args.handler is not None


def test_every_matrix_key_the_workflows_read_is_a_cell_field():
    fields = set(a_cell())
    for name, text in workflow_texts().items():
        used = set(re.findall(r"(?<![\w.-])matrix\.([A-Za-z0-9_-]+)", text))
        assert used or name != "build.yml", "no matrix.X found in build.yml: the pattern is broken"
        assert used <= fields, f"{name} reads matrix.{sorted(used - fields)} that a Cell does not have ({sorted(fields)})"


def test_every_matrix_output_the_workflows_read_is_written():
    """needs.matrix.outputs.X is declared by the matrix job and written by `relocpy ci matrix --github-output`."""
    settings = ci.load_settings(REPO / "ci")
    matrix = ci.build_matrix(load_recipes(), settings, "pull_request", TAG_A)
    written = {line.split("=", 1)[0] for line in ci.github_outputs(matrix, settings.matrix.max_shards).splitlines()}
    build = Workflow(WORKFLOWS / "build.yml")
    declared = build.job("matrix")["outputs"]
    for key, value in declared.items():
        produced = re.fullmatch(r"\$\{\{ steps\.matrix\.outputs\.([\w-]+) \}\}", value)
        assert produced and produced.group(1) in written, f"matrix job output {key}: {value}"
    read = set(re.findall(r"needs\.matrix\.outputs\.([\w-]+)", (WORKFLOWS / "build.yml").read_text()))
    assert read <= set(declared), sorted(read - set(declared))


def test_the_executor_refuses_what_it_does_not_understand(tmp_path):
    from workflow_runner import Closed, Evaluator, WorkflowError

    evaluator = Evaluator({"matrix": Closed("matrix", {"python": "3.13"}), "github": Closed("github", {})},
                          {"fromJSON": json.loads})
    assert evaluator.evaluate("matrix.python == '3.13' && 'yes' || 'no'") == "yes"
    assert evaluator.evaluate("fromJSON('2') > 1") is True
    for bad in ("matrix.pyhton", "contains(matrix.python, '3')", "github.ref", "matrix.python[0]", "vars.X"):
        with pytest.raises(WorkflowError):
            evaluator.evaluate(bad)


def test_the_pull_request_matrix_job_runs_and_builds_the_subset(tmp_path):
    """build.yml's matrix job, executed (no Docker, a few seconds): one cell, build-1 skipped."""
    runner_env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(tmp_path)}
    stand_ins = StandIns(REPO, head_commit(), tmp_path / "jobs", {})
    executor = Executor(REPO, runner_env, stand_ins, log=lambda text: None)
    build_wf = Workflow(WORKFLOWS / "build.yml")
    pr = Run(event="pull_request", inputs={}, vars={}, secrets={}, artifacts=tmp_path / "artifacts")
    matrix = executor.run_job(build_wf, "matrix", pr)
    assert matrix.status == "success", matrix.steps
    assert matrix.outputs["shards"] == "1" and re.fullmatch(r"\d{8}", matrix.outputs["build-tag"])
    cells = executor.matrix_of(build_wf, "build-0", pr, {"matrix": matrix})
    assert [{k: c[k] for k in CELL} for c in cells] == [CELL], cells
    assert executor.should_run(build_wf, "build-0", pr, {"matrix": matrix})
    assert not executor.should_run(build_wf, "build-1", pr, {"matrix": matrix})
    assert sorted({a for _, a, _ in stand_ins.used}) == sorted(STOOD_IN[:3])


# --- end to end -----------------------------------------------------------------------------


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "relocpy", *args], capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 0, f"relocpy {shlex.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture
def engine_without_relocpy_images():
    """A Docker engine answering (started with .ci/start-docker if not), holding no relocpy-* image."""
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        subprocess.run([str(REPO / ".ci" / "start-docker")], check=True)
    listed = subprocess.run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"],
                            capture_output=True, text=True, check=True).stdout.split()
    ours = [name for name in listed if name.startswith("relocpy-")]
    if ours:
        subprocess.run(["docker", "rmi", *ours], capture_output=True, check=True)
    left = subprocess.run(["docker", "images", "--format", "{{.Repository}}"], capture_output=True, text=True,
                          check=True).stdout.split()
    assert not [name for name in left if name.startswith("relocpy-")], left
    return ours


class Phases:
    def __init__(self, log):
        self.times: list[tuple[str, float]] = []
        self.log = log

    def __call__(self, name: str):
        phases = self

        class Timer:
            def __enter__(self):
                self.started = time.monotonic()
                phases.log(f"##### phase: {name}")

            def __exit__(self, *exc):
                seconds = time.monotonic() - self.started
                phases.times.append((name, seconds))
                phases.log(f"##### phase {name}: {seconds:.0f}s{' (failed)' if exc[0] else ''}")

        return Timer()


def head_commit() -> str:
    return subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()


def call_inputs(caller: Workflow, job_id: str, run: Run, executor: Executor) -> dict:
    """The inputs a `uses: ./.github/workflows/X.yml` job passes to the workflow it calls."""
    job = caller.job(job_id)
    assert job["uses"] == "./.github/workflows/build.yml", job["uses"]
    evaluator = executor._evaluator(caller, run, {}, None, {}, Path("."), set())
    return substitute(job.get("with") or {}, evaluator)


def serve_bucket(s3, bucket: str, prefix: str, site: Path) -> None:
    """Copy what the bucket holds under prefix into site (the loopback server's
    directory): a consumer sees exactly what was published."""
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            target = site / item["Key"][len(prefix):]
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, item["Key"], str(target))


@pytest.mark.e2e
@pytest.mark.docker
@pytest.mark.workflows  # runs last (conftest): it removes the images the session made
def test_pull_request_and_two_releases_run_as_written(engine_without_relocpy_images, shared_cache, sources_mirror,
                                                       s3_endpoint, tmp_path):
    log_path = tmp_path / "workflows.log"
    log_file = log_path.open("a")

    def log(text: str) -> None:
        print(text, flush=True)
        log_file.write(text + "\n")
        log_file.flush()

    phases = Phases(log)
    started = time.monotonic()
    home = tmp_path / "home"
    runner_env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(home), "LANG": "C.UTF-8",
        "XDG_CACHE_HOME": str(home / "cache"), "XDG_DATA_HOME": str(home / "data"),
        "XDG_CONFIG_HOME": str(home / "config"),
        # what this host has instead of the internet GitHub's runners have
        "RELOCPY_MIRRORS": str(sources_mirror), "RELOCPY_OFFLINE": "1",
        "SOURCE_DATE_EPOCH": str(EPOCH),
    }
    # The job's RELOCPY_CACHE_DIR is the workspace's .relocpy-cache: the session's shared cache
    # (what GitHub's actions/cache would restore on the second run).
    shared_cache.mkdir(parents=True, exist_ok=True)

    def prepare(workspace: Path) -> None:
        (workspace / ".relocpy-cache").symlink_to(shared_cache, target_is_directory=True)

    bucket = "relocpy-releases"
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", aws_access_key_id="test",
                      aws_secret_access_key="test")
    s3.create_bucket(Bucket=bucket)
    aws_env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_ENDPOINT_URL_S3": s3_endpoint}
    stand_ins = StandIns(REPO, head_commit(), tmp_path / "jobs", aws_env, prepare)
    executor = Executor(REPO, runner_env, stand_ins, log)
    build_wf, release_wf = Workflow(WORKFLOWS / "build.yml"), Workflow(WORKFLOWS / "release.yml")

    # a consumer's environment: not the build host's source mirror, nor offline
    client_env = {**{k: v for k, v in runner_env.items() if k not in ("RELOCPY_MIRRORS", "RELOCPY_OFFLINE")},
                  "PATH": os.environ["PATH"], "PYTHONPATH": str(REPO / "tools")}
    key_file = tmp_path / "release.key"
    public = cli("keys", "generate", "--out", str(key_file), env=client_env).stdout.strip()
    site = tmp_path / "site"  # what the bucket holds, served on loopback
    site.mkdir()

    with phases("pull_request: build.yml matrix job"):
        pr = Run(event="pull_request", inputs={}, vars={}, secrets={}, artifacts=tmp_path / "pr-artifacts")
        matrix = executor.run_job(build_wf, "matrix", pr)
        assert matrix.status == "success", matrix.steps
        assert matrix.outputs["shards"] == "1"
        cells = executor.matrix_of(build_wf, "build-0", pr, {"matrix": matrix})
        assert [{k: c[k] for k in CELL} for c in cells] == [CELL], cells
        assert cells[0]["builder"] == "docker" and cells[0]["docker"] is True
        assert executor.should_run(build_wf, "build-0", pr, {"matrix": matrix})
        assert not executor.should_run(build_wf, "build-1", pr, {"matrix": matrix})

    with LoopbackServer(site) as server:
        for tag, serial in ((TAG_A, 1), (TAG_B, 2)):
            release = Run(event="workflow_dispatch", inputs={"build-tag": tag}, vars={}, secrets={},
                          artifacts=tmp_path / f"artifacts-{tag}")
            called = Run(event="workflow_dispatch", inputs=call_inputs(release_wf, "build", release, executor),
                         vars={}, secrets={}, artifacts=release.artifacts)
            with phases(f"release {tag}: build.yml matrix job"):
                matrix = executor.run_job(build_wf, "matrix", called)
                assert matrix.status == "success" and matrix.outputs["build-tag"] == tag
                cells = [c for c in executor.matrix_of(build_wf, "build-0", called, {"matrix": matrix})
                         if {k: c[k] for k in CELL} == CELL]
                assert len(cells) == 1, "the pull request's cell is in the release matrix"
            with phases(f"release {tag}: build.yml build-0 job ({CELL['python']} {CELL['variant']})"):
                built = executor.run_job(build_wf, "build-0", called, {"matrix": matrix}, matrix=cells[0])
                log(json.dumps(built.steps, indent=1))
                assert built.status == "success", built.steps
            needs = {"build": Job("build.yml", "build", "Build")}
            with phases(f"release {tag}: release.yml publish job to S3"):
                run = Run(event="workflow_dispatch", inputs={"build-tag": tag}, artifacts=release.artifacts,
                          vars={"RELOCPY_BASE_URL": server.url, "RELOCPY_PUBLISH_URL": f"s3://{bucket}/prefix",
                                "RELOCPY_AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/relocpy-publish",
                                "RELOCPY_AWS_REGION": "us-east-1"},
                          secrets={"RELOCPY_SIGNING_KEY": key_file.read_text().strip()})
                done = executor.run_job(release_wf, "publish", run, needs)
                assert done.status == "success", done.steps
                assert done.steps[-1][:2] == ("Remove the signing key", "success")
                assert not (done.runner_temp / "relocpy-signing-key").exists()
            with phases(f"release {tag}: verify and install"):
                serve_bucket(s3, bucket, "prefix/", site)
                verified = json.loads(cli("index", "verify", str(site), "--trusted-key", public, "--json",
                                          env=client_env).stdout)
                assert verified["serial"] == serial, verified["serial"]
                tags = {entry["key"]["build_tag"] for entry in verified["artifacts"]}
                assert tags == {TAG_A, TAG_B} if serial == 2 else tags == {TAG_A}, tags
                versions = tmp_path / f"versions-{tag}"
                cli("install", CELL["python"], "--variant", CELL["variant"], "--index", server.url + "/index.json",
                    "--trusted-key", public, "--install-dir", str(versions), env=client_env)
                [receipt] = versions.glob(".store/*/RELOCPY.json")  # beside the tree the version link names
                key = json.loads(receipt.read_text())["key"]
                assert key["build_tag"] == tag and key["version"] == CELL["python"], key
                ran = cli("run", CELL["python"], "--variant", CELL["variant"], "--install-dir", str(versions), "--",
                          "-c", "import sys, ssl, sqlite3; print(sys.version)", env=client_env)
                assert ran.stdout.startswith(CELL["python"]), ran.stdout

    used = sorted({action for _, action, _ in stand_ins.used})
    log("stood in: " + ", ".join(used))
    for job, action, step in stand_ins.used:
        log(f"  {job}: {action} ({step})")
    total = time.monotonic() - started
    for name, seconds in phases.times:
        log(f"{seconds:8.0f}s  {name}")
    log(f"{total:8.0f}s  total")
    assert used == sorted(STOOD_IN)
