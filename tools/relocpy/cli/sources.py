"""Verbs for the first stages: recipes, plan, fetch."""

from __future__ import annotations

from relocpy.cli import group, verb
from relocpy.cli.options import add_fetch, add_json, add_plan, fetch_settings, positive_int, print_json


def register(commands) -> None:
    recipes = group(commands, "recipes", "check and list the recipes")
    verb(recipes, "check", recipes_check, "validate every recipe file and every cross-reference between them")
    add_json(verb(recipes, "list", recipes_list, "targets x pythons x variants, and what is buildable (and why not)"),
             "the cells")

    parser = verb(commands, "plan", plan, "the resolved build plan: dependencies in build order, sources, "
                  "patches, configure flags, and its content hash")
    add_plan(parser)
    add_json(parser, "the plan")

    parser = verb(commands, "fetch", fetch, "get and verify every source of a plan (or of --all) into the cache")
    add_plan(parser, required=False)
    parser.add_argument("--all", action="store_true", help="fetch the sources of every buildable cell of the recipes")
    parser.add_argument("--jobs", type=positive_int, default=4, metavar="N", help="downloads in parallel (default 4)")
    add_fetch(parser)


def recipes_check(args) -> None:
    from relocpy.errors import RecipeError
    from relocpy.recipes import check_recipes, load_recipes

    recipes = load_recipes()
    problems = check_recipes(recipes)
    if problems:
        for problem in problems[1:]:
            print(f"relocpy: {problem}")
        raise RecipeError(problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    print(
        f"recipes ok: {len(recipes.targets)} targets, {len(recipes.pythons)} pythons, "
        f"{len(recipes.dependencies)} dependencies, {len(recipes.published_variants)} variants"
    )


def recipes_list(args) -> None:
    from relocpy.recipes import cells, load_recipes

    rows = cells(load_recipes())
    if args.json:
        print_json([row.model_dump(mode="json") for row in rows])
        return
    for row in rows:
        mark = "yes" if row.buildable else f"no ({row.reason})"
        print(f"{row.target:<28} {row.python:<9} {row.variant:<22} buildable: {mark}")


def plan(args) -> None:
    from relocpy.plan import resolve_plan
    from relocpy.recipes import load_recipes

    resolved = resolve_plan(load_recipes(), args.python, args.target, args.variant)
    if args.json:
        print_json({"content_hash": resolved.content_hash, **resolved.model_dump(mode="json")})
        return
    print(f"plan {resolved.content_hash[:16]}: CPython {resolved.python.version} for {resolved.target.triple}, "
          f"variant {resolved.variant.name}")
    print("sources:")
    for name, files in resolved.all_sources():
        print(f"  {name:<10} {files[0].file}  sha256:{files[0].sha256}")
        for alternate in files[1:]:
            print(f"  {'':<10} or {alternate.file}  sha256:{alternate.sha256} ({alternate.origin})")
    print("dependencies (build order): " + ", ".join(s.dependency.name for s in resolved.dependencies))
    print("patches: " + (", ".join(p.path for p in resolved.patches) or "none"))
    print("configure: " + " ".join(resolved.configure_flags))
    if resolved.excluded_modules:
        print("excluded modules: " + ", ".join(f"{m} ({why})" for m, why in resolved.excluded_modules.items()))


def fetch(args) -> None:
    from relocpy.errors import UsageError
    from relocpy.fetch import fetch_all
    from relocpy.plan import resolve_plan
    from relocpy.progress import info
    from relocpy.recipes import load_recipes

    recipes = load_recipes()
    if args.all:
        components = all_sources(recipes)
    elif args.python and args.target:
        components = resolve_plan(recipes, args.python, args.target, args.variant).all_sources()
    else:
        raise UsageError("fetch needs --python and --target, or --all")
    for fetched in fetch_all(components, fetch_settings(args, parallel=args.jobs)):
        info(f"{fetched.component:<10} {fetched.source.file}  ok  ({fetched.location})")


def all_sources(recipes):
    """The sources of every buildable cell, each file once."""
    from relocpy.plan import resolve_plan
    from relocpy.recipes import buildable_cells

    seen, components = set(), []
    for cell in buildable_cells(recipes):
        for name, files in resolve_plan(recipes, cell.python, cell.target, cell.variant).all_sources():
            if files[0].sha256 not in seen:
                seen.add(files[0].sha256)
                components.append((name, files))
    return components
