"""Resolve recipes into the BuildPlan for one (python, target, variant)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from relocpy.errors import RecipeError, UnknownNameError
from relocpy.models import BuildPlan, DependencyStep, PatchRef, PythonRecipe, Recipes
from relocpy.paths import templates_dir
from relocpy.recipes import (
    default_variant, get_python, get_target, parse_variant, patch_file, platform_policy, supported_variants,
    unbuildable_reason,
)

CPYTHON_TEMPLATE = "cpython.sh.j2"
# What a cross build runs on the build machine: the quickest build of the
# same version (its dependency steps are those of the native builds).
BUILD_PYTHON_VARIANT = "noopt"


def resolve_plan(recipes: Recipes, python: str, target: str, variant: str | None = None) -> BuildPlan:
    python_recipe = get_python(recipes, python)
    target_recipe = get_target(recipes, target)
    default = parse_variant(recipes, default_variant(recipes, target_recipe), python_recipe)
    chosen = parse_variant(recipes, variant, python_recipe) if variant else default
    reason = unbuildable_reason(target_recipe, chosen.options)
    if reason:
        can = [v for v in supported_variants(recipes, python_recipe) if not unbuildable_reason(target_recipe, v.split("+"))]
        raise UnknownNameError(f"cannot build variant '{chosen.name}' for {target}: {reason} "
                               f"({'it builds: ' + ', '.join(can) if can else 'it builds no variant yet'})")
    platform = platform_policy(recipes, target_recipe)
    if platform is None and target_recipe.os == "linux":
        raise RecipeError(f"policies.toml: no platform policy for {target} ({target_recipe.libc} {target_recipe.arch} "
                          f"at floor {target_recipe.floor})")
    return BuildPlan(
        python=python_recipe,
        target=target_recipe,
        variant=chosen,
        artifact_variant=None if chosen.name == default.name else chosen.name,  # the default is unnamed
        patches=_patch_refs(python_recipe),
        dependencies=_dependency_steps(recipes, target_recipe.dependencies),
        configure_flags=[*python_recipe.configure, *chosen.configure],
        cpython_template_sha256=_file_sha256(templates_dir() / CPYTHON_TEMPLATE),
        excluded_modules=python_recipe.excluded_modules,
        platform=platform,
        build_python=resolve_plan(recipes, python, target_recipe.build_on, BUILD_PYTHON_VARIANT)
        if target_recipe.cross else None,
    )


def build_order(recipes: Recipes, roots: list[str]) -> list[str]:
    """Dependencies reachable from roots, each after everything it depends on."""
    ordered: list[str] = []

    def visit(name: str, trail: tuple[str, ...]) -> None:
        if name in trail:
            raise RecipeError("dependencies.toml: dependency cycle: " + " -> ".join((*trail, name)))
        if name in ordered:
            return
        if name not in recipes.dependencies:
            raise RecipeError(f"dependencies.toml: unknown dependency '{name}'")
        for needed in recipes.dependencies[name].depends:
            visit(needed, (*trail, name))
        ordered.append(name)

    for root in roots:
        visit(root, ())
    return ordered


def _dependency_steps(recipes: Recipes, roots: list[str]) -> list[DependencyStep]:
    steps = []
    for name in build_order(recipes, roots):
        dep = recipes.dependencies[name]
        template = templates_dir() / "deps" / f"{dep.template}.sh.j2"
        steps.append(
            DependencyStep(
                dependency=dep,
                template_sha256=_file_sha256(template),
                depends=build_order(recipes, dep.depends),
            )
        )
    return steps


def _patch_refs(python: PythonRecipe) -> list[PatchRef]:
    refs = []
    for patch in python.patches:
        try:
            path = patch_file(patch)
        except RecipeError as exc:
            raise RecipeError(f"pythons.toml: [{python.version}].patches: {exc}") from None
        refs.append(PatchRef(path=patch, sha256=_file_sha256(path)))
    return refs


def _file_sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        raise RecipeError(f"{path}: file missing (named by the recipes)") from None
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read (named by the recipes): {exc.strerror}") from None
