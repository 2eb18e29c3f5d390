"""CI: the build matrix, the generated GitHub workflows, and their steps.

The matrix is every buildable target x python x supported variant, each cell
with the runner label it needs, cut into shards of at most `shard_size` jobs
(GitHub refuses a matrix of more than 256). Pull requests build a small subset.

The workflows in .github/workflows/ are rendered from ci/templates/ and
ci/settings.toml and committed; `relocpy ci generate --check` fails when they
drifted. The commands a build cell and the release job run are data here
(`CELL_STEPS`, `RELEASE_STEPS`): the templates render them as shell lines,
and `relocpy ci cell` / `relocpy ci release` run the very same commands on a
release manager's host.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from relocpy.datafiles import read_toml
from relocpy.errors import RelocpyError, UnknownNameError
from relocpy.extras import Lazy
from relocpy.models import Recipes, Target, check_build_tag
from relocpy.recipes import buildable_cells, get_python, parse_variant

jinja2 = Lazy("build", "jinja2")

GITHUB_MATRIX_LIMIT = 256
WORKFLOWS = {"build.yml": "build.yml.j2", "release.yml": "release.yml.j2"}
Event = Literal["push", "pull_request"]


class CiError(RelocpyError):
    """Bad CI settings, a matrix that does not fit, a failed CI step."""


class WorkflowDrift(CiError):
    """The committed workflows differ from what the templates render."""

    exit_code = 1


# --- settings -------------------------------------------------------------------


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ActionPin(_Settings):
    repo: str = Field(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+(/[A-Za-z0-9_./-]+)?$")
    sha: str = Field(pattern=r"^[0-9a-f]{40}$")
    version: str = Field(pattern=r"^v[0-9]+(\.[0-9]+)*$")

    @property
    def uses(self) -> str:
        return f"{self.repo}@{self.sha} # {self.version}"


class MatrixSettings(_Settings):
    shard_size: int = Field(default=GITHUB_MATRIX_LIMIT, gt=0, le=GITHUB_MATRIX_LIMIT)
    max_shards: int = Field(default=4, gt=0, le=32)


class SubsetSettings(_Settings):
    pythons: list[str] = []
    variants: list[str] = []
    targets: list[str] = []


class WorkflowSettings(_Settings):
    push_branches: list[str] = ["main"]
    setup_python: str = "3.12"
    build_timeout_minutes: int = Field(default=180, gt=0)
    artifact_retention_days: int = Field(default=14, gt=0, le=90)


class ReleaseSettings(_Settings):
    environment: str = "release"
    base_url_var: str
    publish_url_var: str
    aws_role_var: str
    aws_region_var: str
    signing_key_secret: str

    @field_validator("base_url_var", "publish_url_var", "aws_role_var", "aws_region_var", "signing_key_secret")
    @classmethod
    def _is_identifier(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Z][A-Z0-9_]*", value):
            raise ValueError("must be an upper-case variable name")
        return value


class CiSettings(_Settings):
    matrix: MatrixSettings = MatrixSettings()
    pull_request: SubsetSettings = SubsetSettings()
    runners: dict[str, str]
    workflow: WorkflowSettings = WorkflowSettings()
    release: ReleaseSettings
    actions: dict[str, ActionPin]

    def action(self, name: str) -> str:
        if name not in self.actions:
            raise CiError(f"ci/settings.toml: [actions.{name}] missing (a template uses it)")
        return self.actions[name].uses


def load_settings(ci_dir: Path) -> CiSettings:
    path = ci_dir / "settings.toml"
    data = read_toml(path, CiError, missing="CI settings missing")
    try:
        return CiSettings(**data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise CiError(f"{path}: {where}: {error['msg']}") from None


# --- the matrix -------------------------------------------------------------------


class Cell(BaseModel):
    """One build job: what it builds and where."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    python: str
    target: str
    variant: str
    os: str
    runs_on: str = Field(alias="runs-on", serialization_alias="runs-on")
    builder: Literal["docker", "native"]
    docker: bool
    image: str  # the base image a docker build starts from ("" for native)
    image_suite: str = Field(alias="image-suite", serialization_alias="image-suite")
    # A cross-built target: validating it runs its programs under emulation
    # (or another libc's loader), which the runner is prepared for first.
    emulated: bool = False
    artifact: str


class Matrix(BaseModel):
    event: Event
    build_tag: str
    shards: list[list[Cell]]

    @property
    def cells(self) -> list[Cell]:
        return [cell for shard in self.shards for cell in shard]

    def shard_json(self, index: int) -> str:
        cells = self.shards[index] if index < len(self.shards) else []
        include = [cell.model_dump(by_alias=True) for cell in cells]
        return json.dumps({"include": include}, separators=(",", ":"))


def runner_label(settings: CiSettings, target: Target) -> str:
    for key in (f"{target.os}-{target.arch}", target.os):
        if key in settings.runners:
            return settings.runners[key]
    raise CiError(f"ci/settings.toml: [runners] has no label for {target.os}-{target.arch} ({target.triple})")


def make_cell(settings: CiSettings, target: Target, python: str, variant: str,
              build_machine: Target | None = None) -> Cell:
    """A job for one recipe cell: runner, image and suite are the target's own
    data; a cross-built target runs on its build machine's runner."""
    docker = target.runner == "docker"
    return Cell(
        python=python,
        target=target.triple,
        variant=variant,
        os=target.os,
        runs_on=runner_label(settings, build_machine or target),
        builder=target.runner,
        docker=docker,
        image=target.image if docker else "",
        image_suite=target.image_suite if docker else "",
        emulated=target.cross,
        artifact=f"cpython-{python}-{target.triple}-{variant}",
    )


def all_cells(recipes: Recipes, settings: CiSettings) -> list[Cell]:
    """Every buildable cell of the recipes (recipes.buildable_cells), as a job."""
    cells = []
    for cell in buildable_cells(recipes):
        target = recipes.targets[cell.target]
        build_machine = recipes.targets[target.build_on] if target.cross else None
        cells.append(make_cell(settings, target, cell.python, cell.variant, build_machine))
    return cells


def pull_request_cells(cells: list[Cell], recipes: Recipes, subset: SubsetSettings) -> list[Cell]:
    pythons = {_subset_name(lambda: get_python(recipes, p).version, "pythons") for p in subset.pythons}
    variants = {_subset_name(lambda: parse_variant(recipes, v).name, "variants") for v in subset.variants}
    targets = set(subset.targets)
    unknown = sorted(targets - set(recipes.targets))
    if unknown:
        raise CiError(f"ci/settings.toml: pull_request.targets: unknown target '{unknown[0]}'")
    return [
        cell
        for cell in cells
        if (not pythons or cell.python in pythons)
        and (not variants or cell.variant in variants)
        and (not targets or cell.target in targets)
    ]


def _subset_name(resolve, field: str) -> str:
    try:
        return resolve()
    except UnknownNameError as exc:
        raise CiError(f"ci/settings.toml: pull_request.{field}: {exc}") from None


def shard(cells: list[Cell], size: int, max_shards: int) -> list[list[Cell]]:
    if size > GITHUB_MATRIX_LIMIT:
        raise CiError(f"shard size {size} is over GitHub's limit of {GITHUB_MATRIX_LIMIT} jobs per matrix")
    shards = [cells[start:start + size] for start in range(0, len(cells), size)]
    if len(shards) > max_shards:
        raise CiError(
            f"the matrix has {len(cells)} cells, {len(shards)} shards of {size}, but the workflow declares "
            f"{max_shards}: raise matrix.max_shards in ci/settings.toml and run `relocpy ci generate`"
        )
    return shards


def build_matrix(recipes: Recipes, settings: CiSettings, event: str, build_tag: str) -> Matrix:
    if event not in ("push", "pull_request"):
        raise CiError(f"unknown event '{event}' (known: push, pull_request)")
    cells = all_cells(recipes, settings)
    if event == "pull_request":
        cells = pull_request_cells(cells, recipes, settings.pull_request)
    shards = shard(cells, settings.matrix.shard_size, settings.matrix.max_shards)
    return Matrix(event=event, build_tag=build_tag, shards=shards)


def github_outputs(matrix: Matrix, max_shards: int) -> str:
    """`name=value` lines for $GITHUB_OUTPUT: the tag, the shard count, each shard."""
    lines = [f"build-tag={matrix.build_tag}", f"shards={len(matrix.shards)}", f"cells={len(matrix.cells)}"]
    lines += [f"shard-{index}={matrix.shard_json(index)}" for index in range(max_shards)]
    return "\n".join(lines) + "\n"


def resolve_build_tag(explicit: str | None, root: Path) -> str:
    """The given tag (checked), else the UTC date of the checked-out commit."""
    return check_build_tag(explicit or _commit_date(root))


def _commit_date(root: Path) -> str:
    try:
        stamp = subprocess.run(
            ["git", "log", "-1", "--format=%ct"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        moment = datetime.fromtimestamp(int(stamp), tz=timezone.utc)
    except (OSError, ValueError, subprocess.CalledProcessError):
        moment = datetime.now(tz=timezone.utc)
    return moment.strftime("%Y%m%d")


# --- steps: the commands the workflows run ----------------------------------------

VAR_RE = re.compile(r"^\$([A-Z_][A-Z0-9_]*)(.*)$")


class Step(BaseModel):
    """One command of a workflow job. `$NAME` at the start of a word is filled
    from the job's environment; a word with `*` is a glob."""

    model_config = ConfigDict(frozen=True)

    name: str
    argv: list[str]

    @property
    def shell(self) -> str:
        return " ".join(_shell_word(word) for word in self.argv)

    def resolve(self, values: dict[str, str]) -> list[str]:
        argv: list[str] = []
        for word in self.argv:
            expanded = _fill(word, values)
            argv += sorted(glob.glob(expanded)) if "*" in word else [expanded]
        return argv


def _shell_word(word: str) -> str:
    match = VAR_RE.match(word)
    head, rest = (f'"${match.group(1)}"', match.group(2)) if match else ("", word)
    if not rest:
        return head
    return head + (rest if "*" in rest else shlex.quote(rest))


def _fill(word: str, values: dict[str, str]) -> str:
    match = VAR_RE.match(word)
    if not match:
        return word
    name = match.group(1)
    if name not in values:
        raise CiError(f"step needs a value for ${name}")
    return values[name] + match.group(2)


def cell_steps(settings: CiSettings) -> dict[str, Step]:
    """A build job's commands; $IMAGE and $IMAGE_SUITE come from the cell (the target's data).
    No validation step: `relocpy build` validates every archive it leaves in dist/."""
    return {
        "engine": Step(name="Start the Docker engine", argv=["relocpy", "ci", "engine"]),
        "emulation": Step(name="Prepare emulation", argv=["relocpy", "ci", "emulation", "--target", "$TARGET"]),
        "bootstrap": Step(
            name="Bootstrap the base image",
            argv=["relocpy", "image", "bootstrap", "--suite", "$IMAGE_SUITE", "--tag", "$IMAGE"],
        ),
        "build": Step(
            name="Build",
            argv=[
                "relocpy", "build", "--python", "$PYTHON", "--target", "$TARGET", "--variant", "$VARIANT",
                "--runner", "$BUILDER", "--build-tag", "$BUILD_TAG", "--dist", "$DIST",
            ],
        ),
    }


def release_steps(settings: CiSettings) -> dict[str, Step]:
    """The release job's commands. The index continues the published one's
    serial (--previous), and publish merges in what earlier releases published
    and signs the result (--sign): every release after the first needs both."""
    return {
        # Validating a cross-built target's archives runs them under emulation.
        "emulation": Step(name="Prepare emulation", argv=["relocpy", "ci", "emulation", "--dist", "$DIST"]),
        "validate": Step(name="Validate again", argv=["relocpy", "validate", "$DIST"]),
        "index": Step(
            name="Build and sign the index",
            argv=["relocpy", "index", "build", "$DIST", "--base-url", "$BASE_URL", "--sign", "$KEY_FILE",
                  "--previous", "$PUBLISH_URL"],
        ),
        "publish": Step(
            name="Publish",
            argv=["relocpy", "publish", "$DIST", "--to", "$PUBLISH_URL", "--sign", "$KEY_FILE"],
        ),
    }


def run_steps(steps: list[Step], values: dict[str, str], log_dir: Path) -> None:
    from relocpy import shell
    from relocpy.progress import step as announce

    for item in steps:
        argv = item.resolve(values)
        with announce(f"{item.name}: {shlex.join(argv)}"):
            shell.run(item.name, argv, log_dir / f"{_slug(item.name)}.log")


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


# --- builder image and engine --------------------------------------------------------


def image_archive(cache_dir: Path, image: str) -> Path:
    return cache_dir / f"{image}.tar"


def ensure_engine(wait_seconds: float = 60.0) -> None:
    """Make sure a Docker engine answers, starting the system service if not."""
    if not shutil.which("docker"):
        raise CiError("docker is not installed on this host")
    if _engine_answers():
        return
    start = ["systemctl", "start", "docker"]
    if os.geteuid() != 0:
        start = ["sudo", "-n", *start]
    subprocess.run(start, capture_output=True)
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        if _engine_answers():
            return
        time.sleep(1)
    raise CiError(f"the Docker engine did not answer within {wait_seconds:.0f}s (tried: {shlex.join(start)})")


def _engine_answers() -> bool:
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


# --- workflows -------------------------------------------------------------------------


def template_env(ci_dir: Path) -> jinja2.Environment:
    # GitHub's own `${{ }}` must pass through, so jinja uses [[ ]] and [% %].
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(ci_dir / "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        variable_start_string="[[",
        variable_end_string="]]",
        block_start_string="[%",
        block_end_string="%]",
        comment_start_string="[#",
        comment_end_string="#]",
        autoescape=False,
    )


def render_workflows(root: Path) -> dict[str, str]:
    """File name under .github/workflows/ -> its rendered text."""
    ci_dir = root / "ci"
    settings = load_settings(ci_dir)
    env = template_env(ci_dir)
    context = {
        "settings": settings,
        "action": settings.action,
        "cell": cell_steps(settings),
        "release": release_steps(settings),
        "shards": range(settings.matrix.max_shards),
    }
    rendered = {}
    for name, template in WORKFLOWS.items():
        header = (
            f"# Generated by `relocpy ci generate` from ci/templates/{template} and ci/settings.toml.\n"
            "# Edit those and regenerate; `relocpy ci generate --check` fails when this file drifts.\n"
        )
        try:
            rendered[name] = header + env.get_template(template).render(**context)
        except jinja2.TemplateNotFound:
            raise CiError(f"{ci_dir / 'templates' / template}: template missing") from None
        except jinja2.UndefinedError as exc:
            raise CiError(f"ci/templates/{template}: {exc}") from None
    return rendered


def workflows_dir(root: Path) -> Path:
    return root / ".github" / "workflows"


def write_workflows(root: Path) -> list[Path]:
    """Write the rendered workflows; return the files whose content changed."""
    changed = []
    out = workflows_dir(root)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in render_workflows(root).items():
        path = out / name
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
            changed.append(path)
    return changed


def drifted(root: Path) -> list[Path]:
    out = workflows_dir(root)
    return [
        out / name
        for name, text in render_workflows(root).items()
        if not (out / name).is_file() or (out / name).read_text() != text
    ]


def check_workflows(root: Path) -> None:
    stale = drifted(root)
    if stale:
        more = f" (and {len(stale) - 1} more)" if len(stale) > 1 else ""
        raise WorkflowDrift(
            f"{stale[0].relative_to(root)} differs from what ci/templates renders{more}: run `relocpy ci generate`"
        )
