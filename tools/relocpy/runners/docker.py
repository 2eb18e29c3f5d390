"""Run build scripts in a throwaway container of the target's builder image.

The builder image is rendered from build/docker/builder.Dockerfile.j2 on top
of the target's base image; its tag is the hash of the rendered text, so it is
built once and rebuilt only when the template (or the base image) changes.
Step keys see the builder's identity: that tag and the base image's packages
(name, version, architecture), not the base image's id. debootstrap never
makes the same image twice, so an id would turn every re-bootstrap (a fresh CI
runner, `relocpy image bootstrap --force`) into a full rebuild of unchanged
dependencies; the package list changes exactly when what a build can see does.
Each step runs with no network, its inputs mounted read-only and its outputs
read-write, all at their host paths (see runners/__init__.py).
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import tempfile
import threading
import uuid
from pathlib import Path

from relocpy import shell
from relocpy.engine import DockerEngine
from relocpy.errors import EngineError
from relocpy.extras import Lazy
from relocpy.models import Target
from relocpy.paths import templates_dir
from relocpy.runners import Mounts

jinja2 = Lazy("build", "jinja2")

TEMPLATE = "docker/builder.Dockerfile.j2"
IMAGE_REPOSITORY = "relocpy-builder"
CONTAINER_PREFIX = "relocpy-step-"
BASE_LABEL = "org.relocpy.base-image-id"
PACKAGE_FORMAT = "${Package} ${Version} ${Architecture}\n"


def render_dockerfile(target: Target) -> str:
    if not target.image:
        raise EngineError(f"target '{target.triple}' has no base image: it does not build in Docker")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir()),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    return env.get_template(TEMPLATE).render(target=target)


def builder_tag(dockerfile: str) -> str:
    return f"{IMAGE_REPOSITORY}:{hashlib.sha256(dockerfile.encode()).hexdigest()[:16]}"


def builder_identity(dockerfile: str, base_contents: str) -> str:
    """base_contents: `packages:<digest>` of the base's package list, or its image id (no dpkg in it)."""
    return f"docker:{builder_tag(dockerfile)}@{base_contents}"


def package_list_digest(listing: str) -> str:
    """The digest of `dpkg-query -W` output, whatever order it came in."""
    lines = sorted(line.strip() for line in listing.splitlines() if line.strip())
    return "packages:" + hashlib.sha256("\n".join(lines).encode()).hexdigest()


def container_name(step: str) -> str:
    """Unique and valid for the engine: [a-zA-Z0-9][a-zA-Z0-9_.-]*."""
    slug = re.sub(r"[^a-zA-Z0-9_.-]+", "-", step).strip("-.")[:40] or "step"
    return f"{CONTAINER_PREFIX}{slug}-{uuid.uuid4().hex[:8]}"


def bind(path: Path, read_only: bool) -> list[str]:
    # --mount rather than -v: paths with ':' work, and csv quoting handles ','.
    fields = ["type=bind", f"source={path}", f"target={path}"] + (["readonly"] if read_only else [])
    row = io.StringIO()
    csv.writer(row, lineterminator="").writerow(fields)
    return ["--mount", row.getvalue()]


def run_argv(name: str, image: str, script: Path, env: dict[str, str], mounts: Mounts) -> list[str]:
    """The exact `docker run` command line for one step."""
    script = script.absolute()
    argv = ["docker", "run", "--rm", "--name", name, "--network", "none", "--user", "0:0", "--init"]
    workdir = mounts.writable[0].absolute() if mounts.writable else Path("/tmp")
    argv += ["--workdir", str(workdir)]
    for path in mounts.read_only:
        argv += bind(path.absolute(), read_only=True)
    for path in mounts.writable:
        argv += bind(path.absolute(), read_only=False)
    if not _is_under(script, [*mounts.read_only, *mounts.writable]):
        argv += bind(script, read_only=True)
    for key, value in env.items():
        argv += ["-e", f"{key}={value}"]
    return [*argv, image, "bash", "-euo", "pipefail", str(script)]


class DockerRunner:
    name = "docker"

    def __init__(self, target: Target, engine: DockerEngine | None = None):
        self.target = target
        self.engine = engine or DockerEngine()
        self._image: str | None = None
        self._identity: str | None = None
        self._image_lock = threading.Lock()  # steps may run side by side (deps.build_dependencies)

    def identity(self) -> str:
        """What step keys see: the builder image's tag (its Dockerfile's hash)
        and the packages of the base image it is built on (see the module's
        docstring); an image without dpkg is known by its id."""
        if self._identity is None:
            self.engine.ensure_engine()
            base_id = self._base_image_id()
            listing = self.engine.run_output(base_id, ["dpkg-query", "-W", "-f", PACKAGE_FORMAT])
            contents = package_list_digest(listing) if listing else base_id
            self._identity = builder_identity(render_dockerfile(self.target), contents)
        return self._identity

    def environment(self) -> dict[str, str]:
        """Nothing: the image's own environment (PATH...) is in its Dockerfile, so in the identity."""
        return {}

    def ensure_image(self, log: Path) -> str:
        """Build the builder image unless an up-to-date one exists; return its tag."""
        self.engine.ensure_engine()
        dockerfile = render_dockerfile(self.target)
        tag = builder_tag(dockerfile)
        base_id = self._base_image_id()
        if self.engine.image_label(tag, BASE_LABEL) != base_id:
            with tempfile.TemporaryDirectory(prefix="relocpy-docker-") as context:
                (Path(context) / "Dockerfile").write_text(dockerfile)
                self.engine.build(tag, Path(context), {BASE_LABEL: base_id}, log)
        self._image = tag
        return tag

    def run_script(self, step: str, script: Path, env: dict[str, str], mounts: Mounts, log: Path) -> None:
        with self._image_lock:
            image = self._image or self.ensure_image(log.with_name("builder-image.log"))
        _check_mounts(mounts)
        name = container_name(step)
        try:
            shell.run(step, run_argv(name, image, script, env, mounts), log=log)
        except BaseException:
            # --rm does not cover an interrupted client; the engine may still
            # hold the container (running, or created and never started).
            self.engine.remove_container(name)
            raise

    def close(self) -> None:
        pass

    def _base_image_id(self) -> str:
        base_id = self.engine.image_id(self.target.image)
        if base_id is None:
            suite = self.target.image.removeprefix("relocpy-")
            raise EngineError(
                f"base image '{self.target.image}' not found: run `relocpy image bootstrap --suite {suite}` "
                f"(or `docker tag <image> {self.target.image}`)"
            )
        return base_id


def _check_mounts(mounts: Mounts) -> None:
    # The engine would create a missing source as an empty root-owned directory.
    for path in mounts.read_only:
        if not path.exists():
            raise EngineError(f"cannot mount '{path}' into the build container: it does not exist")
    for path in mounts.writable:
        path.mkdir(parents=True, exist_ok=True)


def _is_under(path: Path, roots: list[Path]) -> bool:
    return any(path.is_relative_to(root.absolute()) for root in roots)
