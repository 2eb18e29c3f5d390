"""Verbs for the first stages: recipes, plan, fetch."""

from __future__ import annotations

from invoke import task

from relocpy.cli.options import FETCH_HELP, PLAN_HELP, fetch_settings, print_json, require_python_and_target
from relocpy.errors import RecipeError, UsageError
from relocpy.fetch import fetch_all
from relocpy.plan import resolve_plan
from relocpy.progress import info
from relocpy.recipes import check_recipes, load_recipes, supported_variants


@task(name="check")
def recipes_check(c):
    """Validate every recipe file and every cross-reference between them."""
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


@task(name="list", help={"json": "print the matrix as JSON"})
def recipes_list(c, json=False):
    """Show targets x pythons x variants, and what is buildable today."""
    recipes = load_recipes()
    rows = []
    for triple, target in recipes.targets.items():
        for version, python in recipes.pythons.items():
            for variant in supported_variants(recipes, python):
                rows.append(
                    {
                        "target": triple,
                        "python": version,
                        "variant": variant,
                        "buildable": target.buildable,
                        "reason": target.reason,
                    }
                )
    if json:
        print_json(rows)
        return
    for row in rows:
        mark = "yes" if row["buildable"] else f"no ({row['reason']})"
        print(f"{row['target']:<28} {row['python']:<9} {row['variant']:<22} buildable: {mark}")


@task(help={**PLAN_HELP, "json": "print the plan as JSON"})
def plan(c, python=None, target=None, variant=None, json=False):
    """Print the resolved build plan: dependencies in build order, sources, patches, configure flags."""
    resolved = resolve_plan(load_recipes(), *require_python_and_target(python, target), variant)
    if json:
        print_json({"content_hash": resolved.content_hash, **resolved.model_dump(mode="json")})
        return
    print(f"plan {resolved.content_hash[:16]}: CPython {resolved.python.version} for {resolved.target.triple}, variant {resolved.variant.name}")
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


@task(
    iterable=["mirror"],
    help={
        **PLAN_HELP,
        **FETCH_HELP,
        "all": "fetch the sources of every buildable target, python and variant",
        "jobs": "downloads in parallel (default 4)",
    },
)
def fetch(c, python=None, target=None, variant=None, all=False, mirror=None, cache_dir=None, offline=False, jobs=4):
    """Get and verify every source of a plan (or of --all) into the cache."""
    recipes = load_recipes()
    if all:
        components = _all_sources(recipes)
    elif python and target:
        components = resolve_plan(recipes, python, target, variant).all_sources()
    else:
        raise UsageError("fetch needs --python and --target, or --all")
    settings = fetch_settings(mirror, cache_dir, offline, parallel=int(jobs))
    for fetched in fetch_all(components, settings):
        info(f"{fetched.component:<10} {fetched.source.file}  ok  ({fetched.location})")


def _all_sources(recipes):
    seen, components = set(), []
    for target in recipes.targets.values():
        if not target.buildable:
            continue
        for version in recipes.pythons:
            for name, files in resolve_plan(recipes, version, target.triple, "noopt").all_sources():
                if files[0].sha256 not in seen:
                    seen.add(files[0].sha256)
                    components.append((name, files))
    return components


COLLECTIONS = {"recipes": [recipes_check, recipes_list]}
TASKS = [plan, fetch]
