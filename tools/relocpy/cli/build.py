"""Verbs for building and validating interpreters."""

from __future__ import annotations

import os
from pathlib import Path

from relocpy.cli import verb
from relocpy.cli.options import add_fetch, add_json, add_plan, fetch_settings, positive_int, print_rows


def register(commands) -> None:
    parser = verb(commands, "build", build, "fetch, build, relocate, validate and package one interpreter into --dist")
    add_plan(parser)
    parser.add_argument("--runner", choices=["docker", "native"],
                        help="where to build: docker (a container of the target's builder image) or native "
                        "(this host); default: the target's runner in the recipes")
    parser.add_argument("--dist", default="dist", metavar="DIR",
                        help="directory receiving the archives and their metadata (default: dist)")
    parser.add_argument("--build-tag", metavar="TAG",
                        help="release tag in artifact names: letters, digits, '.' and '_', e.g. 20261124 "
                        "(default: today's UTC date)")
    parser.add_argument("--jobs", type=positive_int, metavar="N", help="parallel compile jobs (default: number of CPUs)")
    parser.add_argument("--keep-work", action="store_true",
                        help="keep the work directory (sources, logs) after a successful build")
    add_fetch(parser)
    add_json(parser, "what was built (name, flavor, platform tag, sha256, size, path)")

    parser = verb(commands, "validate", validate, "validate archives as a consumer gets them",
                  "Validate archives as a consumer gets them: unpack each at an awkward path, check every "
                  "file (ELF rules, symbol versions, no build-machine path) against the platform policy its "
                  "metadata records, move it, run it (CPython's own tests too, for a full archive).")
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="an archive built by relocpy (its <archive>.json beside it), or a directory: every archive in it")


def build(args) -> None:
    from relocpy.build import BuildOptions, default_build_tag, default_source_date_epoch, run_build
    from relocpy.plan import resolve_plan
    from relocpy.progress import info
    from relocpy.recipes import load_recipes

    plan = resolve_plan(load_recipes(), args.python, args.target, args.variant)
    build_tag = args.build_tag or default_build_tag()
    options = BuildOptions(
        runner=args.runner or plan.target.runner,
        dist=Path(args.dist).absolute(),
        build_tag=build_tag,
        jobs=args.jobs or os.cpu_count() or 2,
        keep_work=args.keep_work,
        source_date_epoch=default_source_date_epoch(build_tag),
    )
    info(f"building CPython {plan.python.version} ({plan.variant.name}) for {plan.target.triple} "
         f"with the {options.runner} runner; plan {plan.content_hash[:16]}")
    built = run_build(plan, options, fetch_settings(args))
    summary = [
        {"name": m.name, "flavor": m.key.flavor, "platform_tag": m.platform_tag, "sha256": m.sha256,
         "size": m.size, "megabytes": round(m.size / 1e6, 1), "path": str(options.dist / m.name)}
        for m in built
    ]
    print_rows(summary, args.json, "{path}  {megabytes} MB  sha256:{sha256}", hidden={"megabytes"})


def validate(args) -> None:
    from relocpy.artifacts import archives_to_validate, validate_artifact
    from relocpy.progress import info

    archives = [archive for path in args.paths for archive in archives_to_validate(Path(path))]
    for archive in archives:
        report = validate_artifact(archive)
        info(f"{archive}: valid ({report.platform_tag}, {len(report.checks)} runtime checks)")
