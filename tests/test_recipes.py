"""Recipes: loading, validation errors (one line naming file, field, reason),
cross-references, variants and plan resolution."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from relocpy.errors import RecipeError, UnknownNameError
from relocpy.plan import build_order, resolve_plan
from relocpy.paths import project_root
from relocpy.recipes import check_recipes, load_recipes, parse_variant, supported_variants

ROOT = project_root()
SOURCES_JSON = ROOT.parent / "shared" / "sources" / "SOURCES.json"


@pytest.fixture(scope="module")
def recipes():
    return load_recipes()


@pytest.fixture
def recipe_copy(tmp_path):
    target = tmp_path / "recipes"
    shutil.copytree(ROOT / "recipes", target)
    return target


def test_shipped_recipes_pass_every_check(recipes):
    assert check_recipes(recipes) == []
    assert recipes.targets["x86_64-unknown-linux-gnu"].buildable
    assert not recipes.targets["x86_64-pc-windows-msvc"].buildable


def test_every_pinned_file_matches_the_mirror_description(recipes):
    """Repacks are pinned as their own alternates; no file claims another's hash."""
    described = {f["file"]: f for f in json.loads(SOURCES_JSON.read_text())["files"]}
    pinned = [s for d in recipes.dependencies.values() for s in d.sources]
    pinned += [s for p in recipes.pythons.values() for s in p.sources]
    mirrored = [s for s in pinned if s.file in described]
    assert len(mirrored) >= 13
    for source in mirrored:
        entry = described[source.file]
        assert source.sha256 == entry["sha256"], source.file
        assert (source.origin == "repack") == (entry["upstream_identical"] == "repacked"), source.file


def test_malformed_field_names_file_field_and_reason(recipe_copy):
    path = recipe_copy / "targets.toml"
    path.write_text(path.read_text().replace('runner = "docker"', 'runner = "kubernetes"', 1))  # in [defaults]
    with pytest.raises(RecipeError) as err:
        load_recipes(recipe_copy)
    message = str(err.value)
    assert str(path) in message and "[x86_64-unknown-linux-gnu].runner" in message and "docker" in message


def test_bad_hash_is_refused(recipe_copy):
    path = recipe_copy / "dependencies.toml"
    path.write_text(path.read_text().replace("ab5a03176ee106d3", "AB5A03176EE106D3"))
    with pytest.raises(RecipeError, match=r"\[bzip2\]\.sources\.0\.sha256: .*64 lowercase hex"):
        load_recipes(recipe_copy)


def test_invalid_toml_is_one_line(recipe_copy):
    (recipe_copy / "pythons.toml").write_text("[broken\n")
    with pytest.raises(RecipeError, match="pythons.toml: not valid TOML"):
        load_recipes(recipe_copy)


def test_cross_reference_problems_are_all_reported(recipe_copy):
    deps = recipe_copy / "dependencies.toml"
    deps.write_text(deps.read_text().replace('depends = ["ncurses"]', 'depends = ["ncurses", "readline"]'))
    deps.write_text(deps.read_text() + '\n[ncurses2]\nversion = "1"\nlicense = "MIT"\ntemplate = "nope"\n'
                    'depends = ["ncurses3"]\n[[ncurses2.sources]]\nfile = "x.tgz"\nsha256 = "' + "0" * 64 + '"\n'
                    '[ncurses3]\nversion = "1"\nlicense = "MIT"\ntemplate = "zlib"\ndepends = ["ncurses2"]\n'
                    '[[ncurses3.sources]]\nfile = "y.tgz"\nsha256 = "' + "1" * 64 + '"\n')
    pythons = recipe_copy / "pythons.toml"
    pythons.write_text(pythons.read_text().replace("0001-ssl-find-system-ca-store.patch", "9999-missing.patch", 1))
    problems = check_recipes(load_recipes(recipe_copy))
    text = "\n".join(problems)
    assert "unknown dependency 'readline'" in text
    assert "no build/deps/nope.sh.j2" in text
    assert "missing patches/cpython/3.13/9999-missing.patch" in text
    assert "dependency cycle: ncurses2 -> ncurses3 -> ncurses2" in text


def test_build_order_puts_dependencies_first(recipes):
    order = build_order(recipes, ["libedit", "zlib"])
    assert order == ["ncurses", "libedit", "zlib"]


def test_variants_combine_by_the_rules(recipes):
    py313, py311 = recipes.pythons["3.13.15"], recipes.pythons["3.11.2"]
    assert parse_variant(recipes, "lto+pgo").name == "pgo+lto"
    assert parse_variant(recipes, "pgo+lto+freethreaded", py313).name == "freethreaded+pgo+lto"
    assert "--disable-gil" in parse_variant(recipes, "freethreaded", py313).configure
    with pytest.raises(UnknownNameError, match="needs Python 3.13 or newer, not 3.11.2"):
        parse_variant(recipes, "freethreaded", py311)
    with pytest.raises(UnknownNameError, match="cannot be combined"):
        parse_variant(recipes, "noopt+lto")
    with pytest.raises(UnknownNameError, match="unknown variant 'fast'.*pgo"):
        parse_variant(recipes, "fast")
    assert "freethreaded" not in supported_variants(recipes, py311)
    assert "freethreaded" in supported_variants(recipes, py313)


def test_plan_resolution_and_stable_hash(recipes):
    plan = resolve_plan(recipes, "3.13.15", "x86_64-unknown-linux-gnu", "pgo+lto")
    names = [s.dependency.name for s in plan.dependencies]
    assert names.index("ncurses") < names.index("libedit")
    assert "--enable-optimizations" in plan.configure_flags and "--with-lto" in plan.configure_flags
    assert plan.artifact_variant is None  # the target's default (targets.toml) is unnamed
    assert resolve_plan(recipes, "3.13.15", "x86_64-unknown-linux-gnu").content_hash == plan.content_hash
    assert resolve_plan(recipes, "3.13.15", "x86_64-unknown-linux-gnu", "lto").artifact_variant == "lto"
    level = resolve_plan(recipes, "3.13.15", "x86_64-unknown-linux-gnu", "x86_64_v3+lto+pgo")
    assert (level.variant.name, level.artifact_variant, level.cpu_level) == ("pgo+lto+x86_64_v3",) * 2 + ("x86_64_v3",)
    assert plan.cpu_level is None
    again = resolve_plan(recipes, "3.13", "x86_64-unknown-linux-gnu", "lto+pgo")
    assert again.content_hash == plan.content_hash
    other = resolve_plan(recipes, "3.13.15", "x86_64-unknown-linux-gnu", "noopt")
    assert other.content_hash != plan.content_hash and other.artifact_variant == "noopt"


def test_unknown_names_list_the_known_ones(recipes):
    with pytest.raises(UnknownNameError, match=r"unknown python '3.9'.*3.11.2, 3.13.15"):
        resolve_plan(recipes, "3.9", "x86_64-unknown-linux-gnu")
    with pytest.raises(UnknownNameError, match=r"unknown target 'sparc'.*x86_64-unknown-linux-gnu"):
        resolve_plan(recipes, "3.13.15", "sparc")
    with pytest.raises(UnknownNameError, match="not buildable yet"):
        resolve_plan(recipes, "3.13.15", "aarch64-apple-darwin")


# --- the command line -----------------------------------------------------------------


def relocpy(*args, **kw):
    return subprocess.run([sys.executable, "-m", "relocpy", *args], capture_output=True, text=True, **kw)


def test_cli_help_version_and_recipes_check():
    assert "recipes" in relocpy("--help").stdout
    assert "check" in relocpy("recipes", "--help").stdout
    assert relocpy("--version").returncode == 0
    assert "--variant" in relocpy("plan", "--help").stdout
    result = relocpy("recipes", "check")
    assert result.returncode == 0 and "recipes ok" in result.stdout


def test_cli_plan_json_and_list_json():
    plan = json.loads(relocpy("plan", "--python", "3.11.2", "--target", "x86_64-unknown-linux-gnu", "--variant", "noopt", "--json").stdout)
    assert len(plan["content_hash"]) == 64 and plan["variant"]["name"] == "noopt"
    rows = json.loads(relocpy("recipes", "list", "--json").stdout)
    assert {"target": "x86_64-unknown-linux-gnu", "python": "3.11.2", "variant": "debug", "buildable": True, "reason": ""} in rows


@pytest.mark.parametrize(
    "args, expected",
    [
        (["plan", "--python", "3.11.2", "--target", "x86_64-unknown-linux-gnu", "--variant", "freethreaded"], "needs Python 3.13"),
        (["plan", "--python", "2.7", "--target", "x86_64-unknown-linux-gnu"], "unknown python '2.7'"),
        (["build", "--python", "3.13.15", "--target", "riscv"], "unknown target 'riscv'"),
        (["fetch"], "--python and --target, or --all"),
    ],
)
def test_cli_user_errors_are_one_line_exit_2(args, expected):
    result = relocpy(*args)
    assert result.returncode == 2
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_cli_corrupted_mirror_file_exits_nonzero_and_caches_nothing(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for source in SOURCES_JSON.parent.iterdir():
        (mirror / source.name).symlink_to(source)
    bad = mirror / "bzip2-1.0.8.tar.gz"
    bad.unlink()
    bad.write_bytes((SOURCES_JSON.parent / bad.name).read_bytes()[:-10])
    env = {k: v for k, v in os.environ.items() if k != "RELOCPY_MIRRORS"}  # only the corrupted mirror
    result = relocpy("fetch", "--python", "3.13.15", "--target", "x86_64-unknown-linux-gnu", "--variant", "noopt",
                     "--mirror", str(mirror), "--cache-dir", str(tmp_path / "cache"), "--offline", env=env)
    assert result.returncode == 2
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("relocpy: error: bzip2: bzip2-1.0.8.tar.gz from ") and str(bad) in line
    assert "expected ab5a03176ee106d3f0fa90e381da478ddae405918153cca248e682cd0c4a2269" in line
    assert "Traceback" not in result.stderr
    cached = [p.name for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert "bzip2-1.0.8.tar.gz" not in cached and not any(n.endswith(".part") for n in cached)


def test_defaults_make_a_new_python_one_short_table(recipe_copy):
    path = recipe_copy / "pythons.toml"
    path.write_text(path.read_text() + '''
["3.13.99"]
patches = []
[["3.13.99".sources]]
file = "Python-3.13.99.tar.xz"
sha256 = "''' + "0" * 64 + '''"
urls = []
["3.13.99".excluded_modules]
_ctypes = "an example: only what differs is stated"
''')
    recipes = load_recipes(recipe_copy)
    new, old = recipes.pythons["3.13.99"], recipes.pythons["3.13.15"]
    assert new.configure == old.configure and new.known_test_failures == old.known_test_failures
    assert new.excluded_modules == {**old.excluded_modules, "_ctypes": "an example: only what differs is stated"}


def test_defaults_make_a_new_target_state_only_what_differs(recipe_copy):
    path = recipe_copy / "targets.toml"
    path.write_text(path.read_text() + '''
[riscv64-unknown-linux-gnu]
os = "linux"
arch = "x86_64"
libc = "glibc"
floor = "2.17"
toolchain = "zig"
buildable = false
reason = "an example"
''')
    recipes = load_recipes(recipe_copy)
    new, old = recipes.targets["riscv64-unknown-linux-gnu"], recipes.targets["x86_64-unknown-linux-gnu"]
    assert new.dependencies == old.dependencies and len(new.dependencies) == 11
    assert (new.runner, new.image, new.image_suite) == (old.runner, old.image, old.image_suite)
