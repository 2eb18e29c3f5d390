"""A small executor for the generated GitHub workflows, for the tests.

It runs a job's `run:` steps in order with bash as GitHub does
(`bash --noprofile --norc -e -o pipefail FILE`), in the environment GitHub
would give: workflow, job and step `env:`, $GITHUB_ENV, $GITHUB_OUTPUT,
$GITHUB_PATH, $RUNNER_TEMP. `${{ }}` expressions go through a small evaluator
that knows exactly what the workflows use and raises on anything else, so a
template change cannot pass unnoticed. `uses:` steps are stood in for only
where GitHub alone can run them (see StandIns); any other action is an error.
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml


class WorkflowError(AssertionError):
    """The workflow uses something this executor does not understand, or a job failed."""


# --- expressions ------------------------------------------------------------------

TOKEN_RE = re.compile(r"""
    \s*(?:
      (?P<string>'(?:[^']|'')*')
    | (?P<number>-?\d+(?:\.\d+)?)
    | (?P<op>==|!=|>=|<=|&&|\|\||[<>!().,\[\]])
    | (?P<name>[A-Za-z_][A-Za-z0-9_-]*)
    )""", re.VERBOSE)

MISSING = object()


class Open(dict):
    """A mapping whose unknown keys are null, as GitHub has them (a step's outputs)."""


class Closed(dict):
    """A mapping whose unknown keys are an error (a typo in a template must not pass)."""

    def __init__(self, what: str, values: dict):
        super().__init__(values)
        self.what = what


def tokenize(expr: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    expr = expr.rstrip()
    while pos < len(expr):
        match = TOKEN_RE.match(expr, pos)
        if not match or match.end() == pos:
            raise WorkflowError(f"expression not understood at {expr[pos:]!r}: {expr!r}")
        kind = match.lastgroup
        tokens.append((kind, match.group(kind)))
        pos = match.end()
    return tokens


def truthy(value: Any) -> bool:
    if isinstance(value, float) and math.isnan(value):
        return False
    return value not in (None, False, 0, "")


def _number(value: Any) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip()) if value.strip() else 0.0
        except ValueError:
            return math.nan
    return math.nan


def _equal(left: Any, right: Any) -> bool:
    if isinstance(left, str) and isinstance(right, str):
        return left.casefold() == right.casefold()  # GitHub compares strings ignoring case
    if type(left) is type(right):
        return left == right
    if isinstance(left, (dict, list)) or isinstance(right, (dict, list)):
        return False
    return _number(left) == _number(right)


class Evaluator:
    """GitHub's expression language, the part the workflows use: literals,
    property access, == != < > <= >= && || !, fromJSON, hashFiles, always, success."""

    def __init__(self, contexts: dict[str, Any], functions: dict[str, Callable[..., Any]]):
        self.contexts = contexts
        self.functions = functions

    def evaluate(self, expr: str) -> Any:
        self.tokens, self.pos, self.source = tokenize(expr), 0, expr
        value = self._or()
        if self.pos != len(self.tokens):
            raise WorkflowError(f"expression not understood after {self.tokens[self.pos - 1][1]!r}: {expr!r}")
        return value

    def _peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _take(self, text: str | None = None) -> tuple[str, str]:
        token = self._peek()
        if token is None or (text is not None and token[1] != text):
            raise WorkflowError(f"expected {text or 'more'} in expression {self.source!r}")
        self.pos += 1
        return token

    def _or(self) -> Any:
        left = self._and()
        while self._peek() == ("op", "||"):
            self._take()
            right = self._and()
            left = left if truthy(left) else right
        return left

    def _and(self) -> Any:
        left = self._compare()
        while self._peek() == ("op", "&&"):
            self._take()
            right = self._compare()
            left = right if truthy(left) else left
        return left

    def _compare(self) -> Any:
        left = self._unary()
        while self._peek() and self._peek()[1] in ("==", "!=", "<", ">", "<=", ">="):
            op = self._take()[1]
            right = self._unary()
            if op == "==":
                left = _equal(left, right)
            elif op == "!=":
                left = not _equal(left, right)
            else:
                a, b = _number(left), _number(right)
                left = {"<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[op]
        return left

    def _unary(self) -> Any:
        if self._peek() == ("op", "!"):
            self._take()
            return not truthy(self._unary())
        return self._primary()

    def _primary(self) -> Any:
        kind, text = self._take()
        if kind == "string":
            return text[1:-1].replace("''", "'")
        if kind == "number":
            return float(text) if "." in text else int(text)
        if (kind, text) == ("op", "("):
            value = self._or()
            self._take(")")
            return value
        if kind != "name":
            raise WorkflowError(f"unexpected {text!r} in expression {self.source!r}")
        if text in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[text]
        if self._peek() == ("op", "("):
            return self._call(text)
        if text not in self.contexts:
            raise WorkflowError(f"unknown context {text!r} in expression {self.source!r}")
        value, path = self.contexts[text], text
        while self._peek() == ("op", "."):
            self._take()
            prop = self._take()
            if prop[0] != "name":
                raise WorkflowError(f"bad property {prop[1]!r} in expression {self.source!r}")
            path += "." + prop[1]
            value = self._property(value, prop[1], path)
        if self._peek() == ("op", "["):
            raise WorkflowError(f"index access is not supported: {self.source!r}")
        return value

    def _property(self, value: Any, name: str, path: str) -> Any:
        if isinstance(value, Closed):
            if name not in value:
                raise WorkflowError(f"{path}: {value.what} has no {name!r} (known: {', '.join(sorted(value))})")
            return value[name]
        if isinstance(value, dict):
            return value.get(name)
        if value is None:
            return None
        raise WorkflowError(f"{path}: property of a {type(value).__name__}")

    def _call(self, name: str) -> Any:
        if name not in self.functions:
            raise WorkflowError(f"unknown function {name}() in expression {self.source!r}")
        self._take("(")
        args = []
        if self._peek() != ("op", ")"):
            args.append(self._or())
            while self._peek() == ("op", ","):
                self._take()
                args.append(self._or())
        self._take(")")
        return self.functions[name](*args)


EXPR_RE = re.compile(r"\$\{\{((?:(?!\}\}).)*)\}\}", re.DOTALL)


def to_string(value: Any) -> str:
    """How GitHub turns a value into text in a `${{ }}` substitution."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def substitute(text: Any, evaluator: Evaluator) -> Any:
    """Fill every `${{ }}` of a string (a lone expression keeps its type), recursively in lists and dicts."""
    if isinstance(text, dict):
        return {key: substitute(value, evaluator) for key, value in text.items()}
    if isinstance(text, list):
        return [substitute(value, evaluator) for value in text]
    if not isinstance(text, str):
        return text
    whole = EXPR_RE.fullmatch(text.strip())
    if whole:
        return evaluator.evaluate(whole.group(1))
    return EXPR_RE.sub(lambda m: to_string(evaluator.evaluate(m.group(1))), text)


def condition(text: Any, evaluator: Evaluator) -> bool:
    """An `if:`: with or without `${{ }}`; without a status function it means success() && (...)."""
    if isinstance(text, bool):
        return text
    expr = str(text).strip()
    whole = EXPR_RE.fullmatch(expr)
    if whole:
        expr = whole.group(1)
    if not re.search(r"\b(always|success|failure|cancelled)\s*\(", expr):
        expr = f"success() && ({expr})"
    return truthy(evaluator.evaluate(expr))


# --- files GitHub reads back: $GITHUB_OUTPUT, $GITHUB_ENV, $GITHUB_PATH -------------


def parse_file_commands(path: Path) -> dict[str, str]:
    """`name=value` lines and `name<<DELIMITER` blocks."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip():
            continue
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            block = []
            while i < len(lines) and lines[i] != delimiter:
                block.append(lines[i])
                i += 1
            if i == len(lines):
                raise WorkflowError(f"{path}: no closing {delimiter!r} for {name}")
            i += 1
            values[name] = "\n".join(block)
        elif "=" in line:
            name, value = line.split("=", 1)
            values[name] = value
        else:
            raise WorkflowError(f"{path}: not a command: {line!r}")
    return values


# --- running a job ------------------------------------------------------------------


@dataclass
class Run:
    """One workflow run's shared state: event, inputs, vars, secrets, its artifacts."""

    event: str
    inputs: dict[str, Any]
    vars: dict[str, str]
    secrets: dict[str, str]
    artifacts: Path  # upload-artifact puts each named artifact in a directory here


@dataclass
class Job:
    workflow: str
    job_id: str
    name: str
    status: str = "success"
    outputs: dict[str, str] = field(default_factory=dict)
    steps: list[tuple[str, str, float]] = field(default_factory=list)  # (name, outcome, seconds)
    runner_temp: Path | None = None


class Workflow:
    def __init__(self, path: Path):
        self.path = path
        self.data = yaml.safe_load(path.read_text())
        self.name = path.name
        self.on = self.data.get(True, self.data.get("on"))  # YAML 1.1 reads `on` as true

    def declared_inputs(self) -> set[str]:
        names: set[str] = set()
        for trigger in ("workflow_call", "workflow_dispatch"):
            spec = (self.on or {}).get(trigger) or {}
            names |= set((spec.get("inputs") or {}).keys())
        return names

    def job(self, job_id: str) -> dict:
        jobs = self.data["jobs"]
        if job_id not in jobs:
            raise WorkflowError(f"{self.name} has no job {job_id!r} (jobs: {', '.join(jobs)})")
        return jobs[job_id]


class Executor:
    """Runs the jobs of workflows on this host. `runner_env` is the runner's own
    environment (PATH, HOME...); `stand_ins` handles `uses:` steps and the
    `run:` steps GitHub's runner alone can do (installing into its Python)."""

    def __init__(self, root: Path, runner_env: dict[str, str], stand_ins: StandIns, log: Callable[[str], None] = print):
        self.root = root  # the repository the workspace is checked out from
        self.runner_env = runner_env
        self.stand_ins = stand_ins
        self.log = log

    def matrix_of(self, workflow: Workflow, job_id: str, run: Run, needs: dict[str, Job]) -> list[dict]:
        """The job's matrix cells (its `include` list), evaluated as GitHub would."""
        job = workflow.job(job_id)
        strategy = job.get("strategy") or {}
        if "matrix" not in strategy:
            return [{}]
        evaluator = self._evaluator(workflow, run, needs, None, {}, Path("."), set())
        matrix = substitute(strategy["matrix"], evaluator)
        if not isinstance(matrix, dict) or set(matrix) != {"include"}:
            raise WorkflowError(f"{workflow.name}:{job_id}: only a matrix of `include` cells is supported: {matrix}")
        return matrix["include"]

    def should_run(self, workflow: Workflow, job_id: str, run: Run, needs: dict[str, Job]) -> bool:
        job = workflow.job(job_id)
        if "if" not in job:
            return all(n.status == "success" for n in needs.values())
        evaluator = self._evaluator(workflow, run, needs, None, {}, Path("."), set())
        return condition(job["if"], evaluator)

    def run_job(self, workflow: Workflow, job_id: str, run: Run, needs: dict[str, Job] | None = None,
                matrix: dict | None = None, workspace: Path | None = None) -> Job:
        needs = needs or {}
        spec = workflow.job(job_id)
        declared = spec.get("needs") or []
        declared = [declared] if isinstance(declared, str) else declared
        if set(needs) != set(declared):
            raise WorkflowError(f"{workflow.name}:{job_id} needs {declared}, given {sorted(needs)}")
        for key in ("uses", "container", "services"):
            if key in spec:
                raise WorkflowError(f"{workflow.name}:{job_id}: `{key}:` jobs are not supported")
        if spec.get("strategy", {}).get("matrix") is not None and matrix is None:
            raise WorkflowError(f"{workflow.name}:{job_id} is a matrix job: pass one cell")
        workspace = workspace or self.stand_ins.new_workspace(f"{job_id}")
        temp = workspace.parent / f"{workspace.name}-runner-temp"
        temp.mkdir(parents=True, exist_ok=True)
        steps_ctx: dict[str, Open] = {}
        evaluator = self._evaluator(workflow, run, needs, matrix, steps_ctx, workspace, set(), temp=temp)
        name = to_string(substitute(spec.get("name", job_id), evaluator))
        runs_on = substitute(spec["runs-on"], evaluator)
        if not str(runs_on).startswith("ubuntu-") or str(runs_on).endswith("-arm"):
            raise WorkflowError(f"{workflow.name}:{job_id}: runs-on {runs_on!r}: only x86_64 ubuntu runners run here")
        result = Job(workflow.name, job_id, name, runner_temp=temp)
        self.log(f"=== {workflow.name} / {job_id}: {name} (runs-on {runs_on}, workspace {workspace})")

        github_env: dict[str, str] = {}
        github_path: list[str] = []
        workflow_env = substitute(workflow.data.get("env") or {}, evaluator)
        job_env = substitute(spec.get("env") or {}, evaluator)
        shell = (((workflow.data.get("defaults") or {}).get("run") or {}).get("shell")
                 or ((spec.get("defaults") or {}).get("run") or {}).get("shell") or "bash")

        for index, step in enumerate(spec["steps"]):
            label = step.get("name") or step.get("uses") or (step.get("run") or "").splitlines()[0]
            failed = result.status == "failure"
            if "if" in step:
                go = condition(step["if"], self._with_status(evaluator, failed))
            else:
                go = not failed
            if not go:
                result.steps.append((label, "skipped", 0.0))
                if step.get("id"):
                    steps_ctx[step["id"]] = Open(outputs=Open(), outcome="skipped", conclusion="skipped")
                self.log(f"--- skip: {label}")
                continue
            started = time.monotonic()
            outputs_file = temp / f"output-{index}"
            env_file = temp / f"env-{index}"
            path_file = temp / f"path-{index}"
            for f in (outputs_file, env_file, path_file):
                f.write_text("")
            env = {
                **self.runner_env,
                "CI": "true",
                "GITHUB_ACTIONS": "true",
                "GITHUB_WORKSPACE": str(workspace),
                "GITHUB_EVENT_NAME": run.event,
                "GITHUB_WORKFLOW": workflow.data.get("name", workflow.name),
                "GITHUB_JOB": job_id,
                "RUNNER_TEMP": str(temp),
                "RUNNER_OS": "Linux",
                "RUNNER_ARCH": "X64",
                "GITHUB_OUTPUT": str(outputs_file),
                "GITHUB_ENV": str(env_file),
                "GITHUB_PATH": str(path_file),
                **{k: to_string(v) for k, v in workflow_env.items()},
                **{k: to_string(v) for k, v in job_env.items()},
                **github_env,
            }
            env["PATH"] = os.pathsep.join([*reversed(github_path), env["PATH"]])
            env.update({k: to_string(v) for k, v in substitute(step.get("env") or {}, evaluator).items()})
            try:
                if "uses" in step:
                    with_ = substitute(step.get("with") or {}, evaluator)
                    self.log(f"--- stand-in for {step['uses'].split('@')[0]}: {label}")
                    outputs = self.stand_ins.uses(step["uses"], with_, env, workspace, run, matrix, label, job_id)
                    outputs_file.write_text("".join(f"{k}={v}\n" for k, v in outputs.items()))
                elif "run" in step:
                    script = substitute(step["run"], evaluator)
                    if step.get("shell", shell) != "bash":
                        raise WorkflowError(f"{label}: only `shell: bash` is supported")
                    cwd = workspace / substitute(step.get("working-directory", "."), evaluator)
                    if self.stand_ins.run_stand_in(script, env, workspace, label, job_id):
                        self.log(f"--- stand-in for `{script.strip()}`: {label}")
                    else:
                        self.log(f"--- run: {label}\n{script.rstrip()}")
                        self._bash(script, env, cwd, temp, index, label)
                else:
                    raise WorkflowError(f"{label}: a step with neither `run:` nor `uses:`")
                outcome = "success"
            except StepError as exc:
                self.log(f"!!! {label} failed: {exc}")
                outcome = "failure"
                result.status = "failure"
            seconds = time.monotonic() - started
            result.steps.append((label, outcome, seconds))
            self.log(f"--- {outcome} in {seconds:.1f}s: {label}")
            github_env.update(parse_file_commands(env_file))
            github_path += [line for line in path_file.read_text().splitlines() if line.strip()]
            if step.get("id"):
                steps_ctx[step["id"]] = Open(outputs=Open(parse_file_commands(outputs_file)),
                                             outcome=outcome, conclusion=outcome)

        if result.status == "success":
            result.outputs = {k: to_string(v) for k, v in substitute(spec.get("outputs") or {}, evaluator).items()}
        self.stand_ins.job_done(job_id, workspace)
        return result

    def _bash(self, script: str, env: dict[str, str], cwd: Path, temp: Path, index: int, label: str) -> None:
        path = temp / f"step-{index}.sh"
        path.write_text(script)
        done = subprocess.run(["bash", "--noprofile", "--norc", "-e", "-o", "pipefail", str(path)],
                              cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.log(done.stdout.rstrip()[-6000:])
        if done.returncode != 0:
            raise StepError(f"exit {done.returncode}")

    @staticmethod
    def _with_status(evaluator: Evaluator, failed: bool) -> Evaluator:
        functions = {**evaluator.functions, "success": lambda: not failed, "failure": lambda: failed,
                     "always": lambda: True, "cancelled": lambda: False}
        return Evaluator(evaluator.contexts, functions)

    def _evaluator(self, workflow: Workflow, run: Run, needs: dict[str, Job], matrix: dict | None,
                   steps: dict, workspace: Path, _unused: set, temp: Path | None = None) -> Evaluator:
        inputs = {name: run.inputs.get(name) for name in workflow.declared_inputs()}
        unknown = set(run.inputs) - set(inputs)
        if unknown:
            raise WorkflowError(f"{workflow.name} declares no input {sorted(unknown)}")
        github = Closed("github", {"event_name": run.event, "workspace": str(workspace),
                                   "workflow": workflow.data.get("name", workflow.name)})
        contexts = {
            "github": github,
            "inputs": Closed("inputs", inputs),
            "vars": Closed("vars (set for this run)", run.vars),
            "secrets": Closed("secrets (set for this run)", run.secrets),
            "needs": Closed("needs", {
                job_id: Closed(f"needs.{job_id}", {
                    "outputs": Closed(f"needs.{job_id}.outputs", dict(done.outputs)),
                    "result": done.status,
                })
                for job_id, done in needs.items()
            }),
            "steps": _StepsContext(steps),
            "runner": Closed("runner", {"temp": str(temp or ""), "os": "Linux", "arch": "X64"}),
        }
        if matrix is not None:
            contexts["matrix"] = Closed("matrix (a Cell of `relocpy ci matrix`)", matrix)
        functions = {
            "fromJSON": _from_json,
            "hashFiles": lambda *patterns: hash_files(workspace, patterns),
            "success": lambda: True,
            "always": lambda: True,
            "failure": lambda: False,
            "cancelled": lambda: False,
        }
        return Evaluator(contexts, functions)


class _StepsContext(Closed):
    """steps.ID: an error for an id no earlier step has (a typo); its outputs are open."""

    def __init__(self, steps: dict):
        super().__init__("steps (the ids of earlier steps)", {})
        self.live = steps

    def __contains__(self, key: object) -> bool:
        return key in self.live

    def __getitem__(self, key: str) -> Any:
        return self.live[key]

    def __iter__(self):
        return iter(self.live)


def _from_json(text: Any) -> Any:
    if not isinstance(text, str) or not text:
        raise WorkflowError(f"fromJSON of {text!r}")
    return json.loads(text)


def hash_files(workspace: Path, patterns: tuple[str, ...]) -> str:
    """hashFiles(): sha256 over the sha256 of every matching file, in path order ('' when none)."""
    files = sorted({p for pattern in patterns for p in glob.glob(str(workspace / pattern), recursive=True)
                    if os.path.isfile(p)})
    if not files:
        return ""
    outer = hashlib.sha256()
    for path in files:
        outer.update(hashlib.sha256(Path(path).read_bytes()).digest())
    return outer.hexdigest()


class StepError(Exception):
    """A step failed: the job goes on only with `if: always()` steps."""


# --- the stand-ins ------------------------------------------------------------------


class StandIns:
    """What GitHub's own machinery does, done here; every use is recorded in `used`.

    - actions/checkout: a clean `git clone` of the repository at the tested commit
    - actions/setup-python: the test's Python first on PATH as python and python3
    - actions/cache: a miss (cache-hit = false); nothing is saved
    - actions/upload-artifact, actions/download-artifact: directories under the run's artifact store
    - aws-actions/configure-aws-credentials: AWS_* for the S3 server on loopback
    - actions/attest-build-provenance: nothing (it needs GitHub's OIDC and Sigstore); checks its subjects exist
    - `python -m pip install -e .`: a `relocpy` command running the workspace's tools/ (no install into the host)
    """

    ACTIONS = {
        "actions/checkout", "actions/setup-python", "actions/cache", "actions/upload-artifact",
        "actions/download-artifact", "aws-actions/configure-aws-credentials", "actions/attest-build-provenance",
    }
    INSTALL_RE = re.compile(r"^\s*python -m pip install -e (?:\.|'\.\[[a-z0-9,]+\]')\s*$")

    def __init__(self, source: Path, commit: str, scratch: Path, aws_env: dict[str, str],
                 prepare_workspace: Callable[[Path], None] | None = None):
        self.source = source
        self.commit = commit
        self.scratch = scratch
        self.aws_env = aws_env
        self.prepare_workspace = prepare_workspace
        self.used: list[tuple[str, str, str]] = []  # (job, action, step)
        self.counter = 0

    def new_workspace(self, label: str) -> Path:
        self.counter += 1
        path = self.scratch / f"{self.counter:02d}-{label}" / "repo"
        path.mkdir(parents=True)
        return path

    def job_done(self, job_id: str, workspace: Path) -> None:
        pass

    def _record(self, job: str, action: str, step: str) -> None:
        self.used.append((job, action, step))

    def uses(self, uses: str, with_: dict, env: dict[str, str], workspace: Path, run: Run, matrix: dict | None,
             label: str, job: str) -> dict[str, str]:
        action = uses.split("@")[0]
        if action not in self.ACTIONS:
            raise WorkflowError(f"{label}: no stand-in for {uses!r}; add one only if GitHub alone can run it")
        self._record(job, action, label)
        temp = Path(env["RUNNER_TEMP"])
        github_env = Path(env["GITHUB_ENV"])
        github_path = Path(env["GITHUB_PATH"])
        if action == "actions/checkout":
            if with_.get("persist-credentials") is not False:
                raise WorkflowError(f"{label}: checkout must not persist credentials")
            subprocess.run(["git", "clone", "--quiet", "--no-checkout", str(self.source), str(workspace)], check=True)
            subprocess.run(["git", "-C", str(workspace), "checkout", "--quiet", self.commit], check=True)
            if self.prepare_workspace:
                self.prepare_workspace(workspace)
            return {}
        if action == "actions/setup-python":
            bin_dir = temp / "setup-python-bin"
            bin_dir.mkdir(exist_ok=True)
            for name in ("python", "python3"):
                # A script, not a symlink: a venv's python reached through a
                # symlink in another directory finds no pyvenv.cfg and leaves the venv.
                (bin_dir / name).unlink(missing_ok=True)
                (bin_dir / name).write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
                (bin_dir / name).chmod(0o755)
            with github_path.open("a") as handle:
                handle.write(f"{bin_dir}\n")
            return {"python-version": "{}.{}.{}".format(*sys.version_info[:3])}
        if action == "actions/cache":
            for key in ("path", "key"):
                if not with_.get(key):
                    raise WorkflowError(f"{label}: cache without {key}")
            return {"cache-hit": "false"}
        if action == "actions/upload-artifact":
            name, path = with_["name"], workspace / with_["path"]
            files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else []
            if not files and with_.get("if-no-files-found") == "error":
                raise StepError(f"upload-artifact: no files in {path}")
            target = run.artifacts / name
            if target.exists():
                raise StepError(f"upload-artifact: an artifact named {name!r} exists already in this run")
            shutil.copytree(path, target)
            return {"artifact-id": name}
        if action == "actions/download-artifact":
            pattern, into = with_.get("pattern", "*"), workspace / with_["path"]
            names = sorted(p.name for p in run.artifacts.iterdir() if fnmatch.fnmatch(p.name, pattern)) \
                if run.artifacts.is_dir() else []
            if not names:
                raise StepError(f"download-artifact: nothing matches {pattern!r}")
            for name in names:
                shutil.copytree(run.artifacts / name, into if with_.get("merge-multiple") else into / name,
                                dirs_exist_ok=True)
            return {"download-path": str(into)}
        if action == "aws-actions/configure-aws-credentials":
            for key in ("role-to-assume", "aws-region"):
                if not with_.get(key):
                    raise StepError(f"configure-aws-credentials: {key} is empty")
            values = {**self.aws_env, "AWS_REGION": with_["aws-region"], "AWS_DEFAULT_REGION": with_["aws-region"]}
            with github_env.open("a") as handle:
                handle.write("".join(f"{k}={v}\n" for k, v in values.items()))
            return {}
        if action == "actions/attest-build-provenance":
            subjects = [line.strip() for line in str(with_.get("subject-path", "")).splitlines() if line.strip()]
            found = [p for s in subjects for p in glob.glob(str(workspace / s))]
            if not found:
                raise StepError(f"attest-build-provenance: no subject matches {subjects}")
            return {}
        raise AssertionError(action)

    def run_stand_in(self, script: str, env: dict[str, str], workspace: Path, label: str, job: str) -> bool:
        """Stand in for `pip install -e .` (with or without extras): a `relocpy` on PATH running the workspace's tools/."""
        if not self.INSTALL_RE.match(script):
            if "pip install" in script:
                raise WorkflowError(f"{label}: an install this executor does not know: {script!r}")
            return False
        self._record(job, "python -m pip install -e .", label)
        bin_dir = Path(env["RUNNER_TEMP"]) / "relocpy-bin"
        bin_dir.mkdir(exist_ok=True)
        script_path = bin_dir / "relocpy"
        script_path.write_text(
            "#!/bin/sh\n"
            f"PYTHONPATH={workspace / 'tools'}${{PYTHONPATH:+:$PYTHONPATH}}\n"
            "export PYTHONPATH\n"
            f'exec python -m relocpy "$@"\n'
        )
        script_path.chmod(0o755)
        with Path(env["GITHUB_PATH"]).open("a") as handle:
            handle.write(f"{bin_dir}\n")
        return True
