"""Verbs for CI: the matrix, the generated workflows, and each step the
workflows run, so a release manager can run the same steps on a host."""

from __future__ import annotations

from pathlib import Path

from relocpy.cli import group, verb
from relocpy.cli.options import add_json

LOG_DIR = Path("work") / "logs" / "ci"  # step logs, beside (not inside) dist/


def _add_event_and_tag(parser) -> None:
    parser.add_argument("--event", choices=["push", "pull_request"], default="push",
                        help="push (every buildable cell, default) or pull_request (the subset in ci/settings.toml)")
    parser.add_argument("--build-tag", metavar="TAG",
                        help="build tag the artifacts carry (default: the UTC date of the checked-out commit)")


def _add_image_cache(parser) -> None:
    parser.add_argument("--image-cache", metavar="DIR",
                        help="directory holding saved base images (loaded if present, saved after bootstrap)")


def register(commands) -> None:
    ci = group(commands, "ci", "the CI matrix, the generated workflows, and the steps they run")
    parser = verb(ci, "matrix", matrix, "every buildable cell with its runner, cut into shards of at most 256 jobs")
    add_json(parser, "the matrix")
    _add_event_and_tag(parser)
    parser.add_argument("--github-output", metavar="FILE",
                        help="also append the shards as step outputs to this file (GitHub's $GITHUB_OUTPUT)")
    parser = verb(ci, "generate", generate, "render .github/workflows/ from ci/templates/ and ci/settings.toml")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 naming the first workflow that differs")
    verb(ci, "engine", engine, "make sure a Docker engine answers, starting the system service if needed")
    parser = verb(ci, "emulation", emulation, "install and register what running a target's programs needs here "
                  "(qemu-user, its foreign root, another libc's loader): nothing for a native target")
    parser.add_argument("--target", metavar="TRIPLE", action="append", default=[],
                        help="a target whose programs must run here (repeatable)")
    parser.add_argument("--dist", metavar="DIR", help="also every target of the archives' metadata in DIR")
    parser = verb(ci, "image", image, "load or bootstrap the base image of every docker cell (or of --target)")
    parser.add_argument("--target", metavar="TRIPLE", help="only this target's image")
    _add_image_cache(parser)
    parser = verb(ci, "cell", cell, "run a build job's steps (engine, image, build, validate) for each matching cell")
    parser.add_argument("--python", metavar="VERSION", help="only cells of this python (default: every one)")
    parser.add_argument("--target", metavar="TRIPLE", help="only cells of this target")
    parser.add_argument("--variant", metavar="VARIANT", help="only cells of this variant")
    _add_event_and_tag(parser)
    parser.add_argument("--dist", default="dist", metavar="DIR", help="directory for the archives (default: dist)")
    _add_image_cache(parser)
    parser = verb(ci, "release", release, "run the release job's steps: validate again, build and sign the index "
                  "(continuing the published serial), publish (merging earlier releases)")
    parser.add_argument("--dist", default="dist", metavar="DIR", help="directory holding every archive and its metadata")
    parser.add_argument("--base-url", required=True, metavar="URL", help="base URL the index's artifact URLs resolve against")
    parser.add_argument("--sign", required=True, metavar="KEYFILE", help="Ed25519 private key file that signs the index")
    parser.add_argument("--to", required=True, metavar="DIR_OR_S3_URL", help="where to publish: a directory or s3://BUCKET/PREFIX")


def _settings():
    from relocpy import ci
    from relocpy.paths import ci_dir

    return ci.load_settings(ci_dir())


def _matrix(event: str, build_tag: str | None):
    from relocpy import ci
    from relocpy.paths import project_root
    from relocpy.recipes import load_recipes

    return ci.build_matrix(load_recipes(), _settings(), event, ci.resolve_build_tag(build_tag, project_root()))


def matrix(args) -> None:
    from relocpy import ci
    from relocpy.cli.options import print_json

    computed = _matrix(args.event, args.build_tag)
    if args.github_output:
        with open(args.github_output, "a", encoding="utf-8") as handle:
            handle.write(ci.github_outputs(computed, _settings().matrix.max_shards))
    if args.json:
        print_json({
            "event": computed.event,
            "build_tag": computed.build_tag,
            "cells": len(computed.cells),
            "shards": [{"include": [c.model_dump(by_alias=True) for c in s]} for s in computed.shards],
        })
        return
    for index, cells in enumerate(computed.shards):
        for c in cells:
            print(f"shard {index}  {c.python:<9} {c.target:<28} {c.variant:<22} {c.runs_on} ({c.builder})")
    print(f"{len(computed.cells)} cells in {len(computed.shards)} shard(s) for {args.event}, build tag {computed.build_tag}")


def generate(args) -> None:
    from relocpy import ci
    from relocpy.paths import project_root

    root = project_root()
    if args.check:
        ci.check_workflows(root)
        print("workflows match ci/templates")
        return
    changed = ci.write_workflows(root)
    for path in changed:
        print(f"wrote {path.relative_to(root)}")
    if not changed:
        print("workflows already up to date")


def engine(args) -> None:
    from relocpy import ci
    from relocpy.progress import info

    ci.ensure_engine()
    info("docker engine ready")


def emulation(args) -> None:
    from relocpy import emulation
    from relocpy.errors import UsageError
    from relocpy.recipes import get_target, load_recipes, platform_policy

    if not args.target and not args.dist:
        raise UsageError("name a --target or a --dist whose programs must run here")
    recipes = load_recipes()
    platforms = {}
    for triple in args.target:
        policy = platform_policy(recipes, get_target(recipes, triple))
        if policy is None:
            raise UsageError(f"{triple}: no platform policy says how its programs run")
        platforms[policy.name] = policy
    platforms.update(_dist_platforms(Path(args.dist)) if args.dist else {})
    emulation.prepare_host([platforms[name] for name in sorted(platforms)])


def _dist_platforms(dist: Path) -> dict:
    """The policies the archives' metadata records they passed: what `relocpy
    validate` runs them by."""
    from relocpy.artifacts import archives_to_validate, read_artifact_metadata

    metas = [read_artifact_metadata(archive) for archive in archives_to_validate(dist)]
    return {meta.validation.platform.name: meta.validation.platform for meta in metas}


def image(args) -> None:
    cells = [c for c in _matrix("push", None).cells if c.docker and (args.target is None or c.target == args.target)]
    _base_images(cells, args.image_cache)


def _base_images(cells, image_cache: str | None) -> None:
    """Each docker cell's base image: loaded from the image cache, else bootstrapped (and saved there)."""
    from relocpy import ci, shell

    for name, suite in sorted({(c.image, c.image_suite) for c in cells}):
        archive = ci.image_archive(Path(image_cache), name) if image_cache else None
        log = LOG_DIR / f"image-{name}.log"
        if archive and archive.is_file():
            shell.run(f"load {name}", ["docker", "load", "--input", str(archive)], log)
            continue
        ci.run_steps([ci.cell_steps(_settings())["bootstrap"]], {"IMAGE": name, "IMAGE_SUITE": suite}, LOG_DIR)
        if archive:
            archive.parent.mkdir(parents=True, exist_ok=True)
            shell.run(f"save {name}", ["docker", "save", "--output", str(archive), name], log)


def cell(args) -> None:
    from relocpy import ci

    computed = _matrix(args.event, args.build_tag)
    chosen = [
        c for c in computed.cells
        if (args.python is None or c.python == args.python or c.python.startswith(args.python + "."))
        and (args.target is None or c.target == args.target)
        and (args.variant is None or c.variant == args.variant)
    ]
    if not chosen:
        raise ci.CiError("no matrix cell matches (see `relocpy ci matrix`)")
    if any(c.docker for c in chosen):
        ci.ensure_engine()
        _base_images([c for c in chosen if c.docker], args.image_cache)
    steps = ci.cell_steps(_settings())
    for c in chosen:
        values = {"PYTHON": c.python, "TARGET": c.target, "VARIANT": c.variant, "BUILDER": c.builder,
                  "BUILD_TAG": computed.build_tag, "DIST": args.dist}
        prepare = [steps["emulation"]] if c.emulated else []
        ci.run_steps([*prepare, steps["build"]], values, LOG_DIR / c.artifact)


def release(args) -> None:
    from relocpy import ci

    steps = ci.release_steps(_settings())
    values = {"DIST": args.dist, "BASE_URL": args.base_url, "KEY_FILE": args.sign, "PUBLISH_URL": args.to}
    ci.run_steps(list(steps.values()), values, LOG_DIR / "release")
