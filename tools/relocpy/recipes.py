"""Load the TOML recipes into models and check every cross-reference."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from packaging.version import Version
from pydantic import BaseModel, ValidationError

from relocpy.cpu import LEVEL_ARCH
from relocpy.datafiles import read_toml
from relocpy.errors import RecipeError, UnknownNameError
from relocpy.models import (
    BuildCell,
    Dependency,
    PlatformPolicy,
    PythonRecipe,
    Recipes,
    Target,
    Variant,
    VariantOption,
    VariantsFile,
)
from relocpy.paths import patches_dir, recipes_dir, templates_dir

RECIPE_FILES = ("targets.toml", "dependencies.toml", "pythons.toml", "variants.toml", "policies.toml")


def load_recipes(directory: Path | None = None) -> Recipes:
    directory = directory or recipes_dir()
    path = {name: directory / name for name in RECIPE_FILES}
    raw = {name: read_toml(path[name], RecipeError, missing="recipe file missing") for name in RECIPE_FILES}
    variants = _validated(path["variants.toml"], VariantsFile, raw["variants.toml"])
    pythons = _table(path["pythons.toml"], *_with_defaults(path["pythons.toml"], raw["pythons.toml"]), PythonRecipe,
                     "version", required="python")
    _check_one_spelling_each(path["pythons.toml"], pythons)
    return Recipes(
        targets=_table(path["targets.toml"], *_with_defaults(path["targets.toml"], raw["targets.toml"]), Target,
                       "triple", required="target"),
        dependencies=_table(path["dependencies.toml"], raw["dependencies.toml"], {}, Dependency, "name"),
        pythons=pythons,
        options=_table(path["variants.toml"], variants.options, {}, VariantOption, "name", "options."),
        policies=_table(path["policies.toml"], raw["policies.toml"], {}, PlatformPolicy, "name"),
        default_variant=variants.default,
        published_variants=variants.published,
    )


def _validated(path: Path, model: type[BaseModel], fields: dict, where: str = "") -> Any:
    """fields as a model, or one line naming the file, the field and what is wrong."""
    try:
        return model(**fields)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = ".".join(str(part) for part in error["loc"])  # none: a check across fields
        field = f"{where}.{loc}" if where and loc else where or loc
        reason = error["msg"].removeprefix("Value error, ")  # pydantic's prefix for a validator's ValueError
        raise RecipeError(f"{path}: {field}: {reason}") from None


def _with_defaults(path: Path, data: dict) -> tuple[dict, dict]:
    """A file's [defaults] table applies to every other section, which may
    override any field: a new python or target states only what differs."""
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise RecipeError(f"{path}: defaults: expected a table")
    return {key: value for key, value in data.items() if key != "defaults"}, defaults


def _merged(defaults: dict, fields: dict) -> dict:
    """A section's fields over the defaults: tables add to the default table
    (a python lists only its own extra excluded modules), anything else replaces."""
    merged = {**defaults, **fields}
    for name, value in fields.items():
        if isinstance(value, dict) and isinstance(defaults.get(name), dict):
            merged[name] = {**defaults[name], **value}
    return merged


def _table(
    path: Path, data: dict, defaults: dict, model: type[BaseModel], key_field: str, prefix: str = "",
    required: str = "",
) -> dict:
    """Validate each [section] of a recipe file; the section name is the key.
    required names what a section is when the file needs at least one."""
    if required and not data:
        raise RecipeError(f"{path}: no {required} defined: the file needs at least one [section]")
    out = {}
    for key, fields in data.items():
        if not isinstance(fields, dict):
            raise RecipeError(f"{path}: [{prefix}{key}]: expected a table")
        out[key] = _validated(path, model, {key_field: key, **_merged(defaults, fields)}, f"[{prefix}{key}]")
    return out


def _check_one_spelling_each(path: Path, pythons: dict[str, PythonRecipe]) -> None:
    """Each version once: "3.13.15" and "3.13.015" are one Python (the model
    already refuses every spelling but the canonical one; 3.13 and 3.13.0 are
    both canonical and still one version)."""
    seen: dict[Version, str] = {}
    for version in pythons:
        other = seen.setdefault(Version(version), version)
        if other != version:
            raise RecipeError(f"{path}: [{version}]: the same version as [{other}]: list each Python once")


# --- cross-reference checks ---------------------------------------------------


def check_recipes(recipes: Recipes) -> list[str]:
    """Every problem found across the recipes, one line each (empty: all good)."""
    problems: list[str] = []
    for triple, target in recipes.targets.items():
        for name in target.dependencies:
            if name not in recipes.dependencies:
                problems.append(f"targets.toml: [{triple}].dependencies: unknown dependency '{name}'")
    for name, dep in recipes.dependencies.items():
        for needed in dep.depends:
            if needed not in recipes.dependencies:
                problems.append(f"dependencies.toml: [{name}].depends: unknown dependency '{needed}'")
        if not (templates_dir() / "deps" / f"{dep.template}.sh.j2").is_file():
            problems.append(f"dependencies.toml: [{name}].template: no build/deps/{dep.template}.sh.j2")
    for version, python in recipes.pythons.items():
        for patch in python.patches:
            try:
                patch_file(patch)
            except RecipeError as exc:
                problems.append(f"pythons.toml: [{version}].patches: {exc}")
    for triple, target in recipes.targets.items():
        if target.runner == "docker" and not (target.image and target.image_suite):
            problems.append(f"targets.toml: [{triple}]: the docker runner needs image and image_suite")
    problems += _variant_problems(recipes)
    problems += _policy_problems(recipes)
    problems += _cross_problems(recipes)
    cycle = _find_cycle(recipes)
    if cycle:
        problems.append("dependencies.toml: dependency cycle: " + " -> ".join(cycle))
    return problems


def _variant_problems(recipes: Recipes) -> list[str]:
    problems = []
    for name, option in recipes.options.items():
        for other in option.conflicts:
            if other not in recipes.options:
                problems.append(f"variants.toml: [options.{name}].conflicts: unknown option '{other}'")
    target_defaults = [t.default_variant for t in recipes.targets.values() if t.default_variant]
    for variant in [recipes.default_variant, *recipes.published_variants, *target_defaults]:
        try:
            parse_variant(recipes, variant)
        except UnknownNameError as exc:
            problems.append(f"variants.toml: {exc}")
    return problems


def _policy_problems(recipes: Recipes) -> list[str]:
    """Every Linux target is validated by a platform policy (macOS and Windows
    files are not ELF: their rules are not policies yet)."""
    problems = []
    for triple, target in recipes.targets.items():
        if target.os == "linux" and platform_policy(recipes, target) is None:
            problems.append(f"targets.toml: [{triple}]: no platform policy for {target.libc} {target.arch} "
                            f"at floor {target.floor} in policies.toml")
    return problems


def _cross_problems(recipes: Recipes) -> list[str]:
    """A cross-built target names a buildable target of the same OS, itself
    built natively: the build runs that target's interpreter."""
    problems = []
    for triple, target in recipes.targets.items():
        if not target.build_on:
            continue
        builder = recipes.targets.get(target.build_on)
        if builder is None or builder.build_on or not builder.buildable or builder.os != target.os:
            problems.append(f"targets.toml: [{triple}].build_on: '{target.build_on}' is not a natively built, "
                            f"buildable {target.os} target")
    return problems


def _find_cycle(recipes: Recipes) -> list[str] | None:
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> list[str] | None:
        if state.get(name) == "done":
            return None
        if state.get(name) == "active":
            return path[path.index(name):] + [name]
        state[name] = "active"
        dep = recipes.dependencies.get(name)
        for needed in dep.depends if dep else []:
            found = visit(needed, path + [name])
            if found:
                return found
        state[name] = "done"
        return None

    for name in recipes.dependencies:
        found = visit(name, [])
        if found:
            return found
    return None


def patch_file(patch: str) -> Path:
    """The file a recipe's patch names, which must be a file under patches/
    once links are followed: a build reads it, and its hash keys the plan."""
    root = patches_dir().resolve()
    path = (root / patch).resolve()
    if not path.is_relative_to(root):
        raise RecipeError(f"patches/{patch} leads out of patches/ (to {path})")
    if not path.is_file():
        raise RecipeError(f"missing patches/{patch}" + (" (a directory, not a file)" if path.is_dir() else ""))
    return path


# --- lookups that users can get wrong ----------------------------------------


def get_python(recipes: Recipes, version: str) -> PythonRecipe:
    if version in recipes.pythons:
        return recipes.pythons[version]
    matches = [v for v in recipes.pythons if v.startswith(version + ".")]
    if len(matches) == 1:
        return recipes.pythons[matches[0]]
    known = ", ".join(sorted(recipes.pythons, key=Version))
    raise UnknownNameError(f"unknown python '{version}' (known: {known})")


def get_target(recipes: Recipes, triple: str) -> Target:
    if triple in recipes.targets:
        return recipes.targets[triple]
    known = ", ".join(sorted(recipes.targets))
    raise UnknownNameError(f"unknown target '{triple}' (known: {known})")


def platform_policy(recipes: Recipes, target: Target) -> PlatformPolicy | None:
    """The policy of the target's libc, arch and floor, if there is one."""
    found = [p for p in recipes.policies.values() if (p.libc, p.arch, p.floor) == (target.libc, target.arch, target.floor)]
    return found[0] if found else None


def parse_variant(recipes: Recipes, name: str, python: PythonRecipe | None = None) -> Variant:
    """Turn 'freethreaded+pgo+lto' into a checked Variant (options in canonical order)."""
    requested = [part for part in name.split("+") if part]
    known = list(recipes.options)
    unknown = [part for part in requested if part not in recipes.options]
    if unknown or not requested:
        raise UnknownNameError(
            f"unknown variant '{name}' (options: {', '.join(known)}; combine with '+', "
            f"e.g. {', '.join(recipes.published_variants)})"
        )
    for option in requested:
        clash = set(recipes.options[option].conflicts) & set(requested)
        if clash:
            raise UnknownNameError(f"variant '{name}': '{option}' cannot be combined with '{sorted(clash)[0]}'")
        minimum = recipes.options[option].min_python
        if python and minimum and Version(python.version) < Version(minimum):
            raise UnknownNameError(
                f"variant '{name}': '{option}' needs Python {minimum} or newer, not {python.version}"
            )
    ordered = [option for option in known if option in requested]
    configure = [flag for option in ordered for flag in recipes.options[option].configure]
    canonical = "+".join(_display_order(ordered))
    return Variant(name=canonical, options=ordered, configure=configure)


def _display_order(options: list[str]) -> list[str]:
    # freethreaded first, then the optimisations: "freethreaded+pgo+lto".
    return sorted(options, key=lambda o: (o != "freethreaded", ["pgo", "lto"].index(o) if o in ("pgo", "lto") else 2))


def default_variant(recipes: Recipes, target: Target) -> str:
    """The variant a target builds and installs when none is named: its best."""
    return target.default_variant or recipes.default_variant


def supported_variants(recipes: Recipes, python: PythonRecipe) -> list[str]:
    supported = []
    for name in recipes.published_variants:
        try:
            parse_variant(recipes, name, python)
        except UnknownNameError:
            continue
        supported.append(name)
    return supported


# --- what the farm builds ------------------------------------------------------


def cells(recipes: Recipes) -> list[BuildCell]:
    """Every target x python x published variant the python supports, each
    marked buildable or not, with why. The one definition of "buildable":
    `recipes list`, `fetch --all`, `plan`/`build` and `ci matrix` all use it."""
    out = []
    for triple in sorted(recipes.targets):
        target = recipes.targets[triple]
        for version, python in recipes.pythons.items():
            for variant in supported_variants(recipes, python):
                if _level_of_another_arch(target, variant.split("+")):
                    continue  # not a cell at all: x86_64_v3 of an aarch64 target
                reason = unbuildable_reason(target, variant.split("+"))
                out.append(BuildCell(target=triple, python=version, variant=variant, buildable=not reason, reason=reason))
    return out


def unbuildable_reason(target: Target, options: list[str]) -> str:
    """Why this target cannot build a variant of these options ("" if it can)."""
    if not target.buildable:
        return f"not buildable yet: {target.reason}"
    level = _level_of_another_arch(target, options)
    if level:
        return f"{level} is a CPU level of {LEVEL_ARCH[level]}, not {target.arch}"
    if "pgo" in options and target.cross:
        return f"PGO trains by running the build, and {target.triple} is cross-built on {target.build_on}"
    return ""


def _level_of_another_arch(target: Target, options: list[str]) -> str | None:
    return next((o for o in options if o in LEVEL_ARCH and LEVEL_ARCH[o] != target.arch), None)


def buildable_cells(recipes: Recipes) -> list[BuildCell]:
    return [cell for cell in cells(recipes) if cell.buildable]
