"""Hostile recipes: every malformed file, wrong type, escaping patch path and
second spelling of a Python ends in one `relocpy: error:` line naming the file
and the field, exit 2, and nothing written anywhere.

Each case edits a copy of the project's recipes (RELOCPY_ROOT points at it)
and runs the real `relocpy recipes check`.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from cli_outcome import REPO, client_env, refused, run, snapshot

EXIT_RECIPE = 2
TARGET = "x86_64-unknown-linux-gnu"


@pytest.fixture
def root(tmp_path) -> Path:
    """A copy of what the recipes name: recipes/, patches/ and build/."""
    copy = tmp_path / "project"
    for data in ("recipes", "patches", "build"):
        shutil.copytree(REPO / data, copy / data, symlinks=True)
    return copy


def edit(name: str, old: str, new: str, count: int = 1) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        path = root / "recipes" / name
        text = path.read_text()
        assert old in text, f"{old!r} is not in {name}: the case no longer tests anything"
        path.write_text(text.replace(old, new, count))
    return apply


def append(name: str, text: str) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        path = root / "recipes" / name
        path.write_text(path.read_text() + text)
    return apply


def replace_file(name: str, content: bytes | None) -> Callable[[Path], None]:
    """The file's bytes replaced; None: a directory where the file was."""
    def apply(root: Path) -> None:
        path = root / "recipes" / name
        path.unlink()
        if content is None:
            path.mkdir()
        else:
            path.write_bytes(content)
    return apply


def python_twice(spelling: str) -> Callable[[Path], None]:
    """3.13.15's whole table again under another spelling of its version."""
    def apply(root: Path) -> None:
        path = root / "recipes" / "pythons.toml"
        text = path.read_text()
        table = text[text.index('["3.13.15"]'):text.index('["3.11.2"]')]
        path.write_text(text + "\n" + table.replace('"3.13.15"', f'"{spelling}"'))
    return apply


def with_patch(patch: str) -> Callable[[Path], None]:
    return edit("pythons.toml", '"cpython/3.13/0001', f'"{patch}", "cpython/3.13/0001')


def nested(depth: int) -> bytes:
    return ("a = " + "[" * depth + "]" * depth + "\n").encode()


V, P, T, D = "variants.toml", "pythons.toml", "targets.toml", "dependencies.toml"

CASES = {
    # variants.toml: wrong types, values and keys
    "min_python not a version": (
        edit(V, 'min_python = "3.13"', 'min_python = "abc"'),
        "{r}/variants.toml: [options.freethreaded].min_python: 'abc' is not a version number"),
    "min_python a number": (
        edit(V, 'min_python = "3.13"', "min_python = 3.13"),
        "{r}/variants.toml: [options.freethreaded].min_python: Input should be a valid string"),
    "min_python a second spelling": (
        edit(V, 'min_python = "3.13"', 'min_python = "3.013"'),
        "{r}/variants.toml: [options.freethreaded].min_python: '3.013': write it as '3.13'"),
    "published a string": (
        edit(V, "published = [", 'published = "pgo"\nunused = ['),
        "{r}/variants.toml: published: Input should be a valid list"),
    "published empty": (
        edit(V, 'published = ["noopt"', 'published = []\nunused = ["noopt"'),
        "{r}/variants.toml: published: List should have at least 1 item after validation, not 0"),
    "default a number": (
        edit(V, 'default = "lto"', "default = 3"),
        "{r}/variants.toml: default: Input should be a valid string"),
    "default missing": (
        edit(V, 'default = "lto"\n', ""),
        "{r}/variants.toml: default: Field required"),
    "a misspelt key": (
        edit(V, "published = [", "publshed = ["),
        "{r}/variants.toml: published: Field required"),
    "options an array": (
        replace_file(V, b'default = "lto"\npublished = ["lto"]\noptions = [1]\n'),
        "{r}/variants.toml: options: Input should be a valid dictionary"),
    "no options": (
        replace_file(V, b'default = "lto"\npublished = ["lto"]\n'),
        "{r}/variants.toml: options: Field required"),
    "conflicts a string": (
        edit(V, 'conflicts = ["pgo", "lto", "debug"]', 'conflicts = "pgo"'),
        "{r}/variants.toml: [options.noopt].conflicts: Input should be a valid list"),
    "an option name artifact names cannot carry": (
        append(V, '\n[options."pgo-2"]\nconfigure = []\n'),
        "{r}/variants.toml: [options.pgo-2].name: String should match pattern '^[a-z][a-z0-9_]*$'"),
    "an option that is not a table": (
        edit(V, "[options.pgo]\n", '[options]\nfast = "yes"\n[options.pgo]\n'),
        "{r}/variants.toml: [options.fast]: expected a table"),
    "an unknown field in an option": (
        edit(V, 'description = "link-time optimisation"', 'descripton = "link-time optimisation"'),
        "{r}/variants.toml: [options.lto].descripton: Extra inputs are not permitted"),
    # targets.toml
    "targets.toml empty": (
        replace_file(T, b""),
        "{r}/targets.toml: no target defined: the file needs at least one [section]"),
    "targets.toml only defaults": (
        replace_file(T, b'[defaults]\nrunner = "docker"\n'),
        "{r}/targets.toml: no target defined: the file needs at least one [section]"),
    "targets.toml a directory": (
        replace_file(T, None),
        "{r}/targets.toml: cannot read: Is a directory"),
    "targets.toml not TOML": (
        replace_file(T, b"[x86_64\n"),
        "{r}/targets.toml: not valid TOML: Expected ']' at the end of a table declaration (at line 1, column 8)"),
    "defaults not a table": (
        edit(T, "[defaults]\n", 'defaults = 3\n[unused]\n'),
        "{r}/targets.toml: defaults: expected a table"),
    "a target that is not a table": (
        edit(T, "[defaults]\n", 'stray = "value"\n[defaults]\n'),
        "{r}/targets.toml: [stray]: expected a table"),
    "buildable a string": (
        edit(T, "buildable = true", 'buildable = "perhaps"'),
        f"{{r}}/targets.toml: [{TARGET}].buildable: Input should be a valid boolean, unable to interpret input"),
    "cflags a string": (
        edit(T, 'cflags = ["-fPIC"]', 'cflags = "-fPIC"'),
        f"{{r}}/targets.toml: [{TARGET}].cflags: Input should be a valid list"),
    # pythons.toml
    "pythons.toml empty": (
        replace_file(P, b"# nothing yet\n"),
        "{r}/pythons.toml: no python defined: the file needs at least one [section]"),
    "pythons.toml missing": (
        lambda root: (root / "recipes" / P).unlink(),
        "{r}/pythons.toml: recipe file missing"),
    "pythons.toml a link to itself": (
        lambda root: ((root / "recipes" / P).unlink(), (root / "recipes" / P).symlink_to(P)),
        "{r}/pythons.toml: cannot read: Too many levels of symbolic links"),
    "a version that is not one": (
        python_twice("three"),
        "{r}/pythons.toml: [three].version: 'three' is not a version number"),
    "3.13.15 again as 3.13.015": (
        python_twice("3.13.015"),
        "{r}/pythons.toml: [3.13.015].version: '3.13.015': write it as '3.13.15'"),
    "3.13.15 again with a space": (
        python_twice(" 3.13.15"),
        "{r}/pythons.toml: [ 3.13.15].version: ' 3.13.15': write it as '3.13.15'"),
    "3.13.15 again as 3.13.15.0": (
        python_twice("3.13.15.0"),
        "{r}/pythons.toml: [3.13.15.0]: the same version as [3.13.15]: list each Python once"),
    "3.13.15 again as v3.13.15": (
        python_twice("v3.13.15"),
        "{r}/pythons.toml: [v3.13.15].version: 'v3.13.15': write it as '3.13.15'"),
    # patch paths that leave patches/, by their spelling
    "a patch up and out": (
        with_patch("../../etc/passwd"),
        "{r}/pythons.toml: [3.13.15].patches: '../../etc/passwd' is not a plain path under patches/, "
        "e.g. cpython/3.13/0001-fix.patch"),
    "a patch at an absolute path": (
        with_patch("/etc/passwd"),
        "{r}/pythons.toml: [3.13.15].patches: '/etc/passwd' is not a plain path under patches/, "
        "e.g. cpython/3.13/0001-fix.patch"),
    "a patch through a dot directory": (
        with_patch("cpython/./3.13/0001-ssl-find-system-ca-store.patch"),
        "{r}/pythons.toml: [3.13.15].patches: 'cpython/./3.13/0001-ssl-find-system-ca-store.patch' is not a "
        "plain path under patches/, e.g. cpython/3.13/0001-fix.patch"),
    "a patch with an empty part": (
        with_patch("cpython//3.13/0001-ssl-find-system-ca-store.patch"),
        "{r}/pythons.toml: [3.13.15].patches: 'cpython//3.13/0001-ssl-find-system-ca-store.patch' is not a "
        "plain path under patches/, e.g. cpython/3.13/0001-fix.patch"),
    "a patch with a backslash": (
        with_patch("cpython\\\\..\\\\..\\\\x.patch"),
        "{r}/pythons.toml: [3.13.15].patches: 'cpython\\\\..\\\\..\\\\x.patch' is not a plain path under "
        "patches/, e.g. cpython/3.13/0001-fix.patch"),
    "a patch listed twice": (
        with_patch("cpython/3.13/0001-ssl-find-system-ca-store.patch"),
        "{r}/pythons.toml: [3.13.15].patches: a patch is listed twice"),
    # dependencies.toml
    "a template path that leaves build/deps": (
        edit(D, 'template = "zlib"', 'template = "../../../etc/passwd"'),
        "{r}/dependencies.toml: [zlib].template: '../../../etc/passwd' must be a plain file name"),
    "a source file name with a directory": (
        edit(D, 'file = "zlib-1.3.1.tar.gz"', 'file = "../zlib-1.3.1.tar.gz"'),
        "{r}/dependencies.toml: [zlib].sources.0.file: '../zlib-1.3.1.tar.gz' must be a plain file name"),
    "a dependency without sources": (
        append(D, '\n[empty]\nversion = "1"\nlicense = "MIT"\ntemplate = "zlib"\nsources = []\n'),
        "{r}/dependencies.toml: [empty].sources: List should have at least 1 item after validation, not 0"),
    "dependencies.toml not UTF-8": (
        replace_file(D, b"\xff\xfe[zlib]\n"),
        "{r}/dependencies.toml: not UTF-8 text (byte 0 is 0xff)"),
    "dependencies.toml in UTF-16": (
        replace_file(D, "[zlib]\n".encode("utf-16")),
        "{r}/dependencies.toml: not UTF-8 text (byte 0 is 0xff)"),
    # nesting that would exhaust the parser's recursion, or stay just under it
    "policies.toml nested 100000 deep": (
        replace_file("policies.toml", nested(100_000)),
        "{r}/policies.toml: not valid TOML: nested deeper than 16 levels"),
    "policies.toml nested 300 deep": (
        replace_file("policies.toml", nested(300)),
        "{r}/policies.toml: nested deeper than 16 levels"),
    "inline tables nested 5000 deep": (
        replace_file("policies.toml", ("a = " + "{b = " * 5000 + "1" + "}" * 5000 + "\n").encode()),
        "{r}/policies.toml: not valid TOML: nested deeper than 16 levels"),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_a_malformed_recipe_is_one_line_naming_file_and_field(case, root, tmp_path):
    change, expected = CASES[case]
    change(root)
    home = tmp_path / "home"
    before = snapshot(root, home)
    result = run("recipes", "check", env=client_env(home, RELOCPY_ROOT=str(root)))
    assert refused(result, EXIT_RECIPE) == "relocpy: error: " + expected.format(r=root / "recipes")
    assert snapshot(root, home) == before


# --- patches that leave patches/ once links are followed -------------------------------------------


def link_out(root: Path, relative: str, to: str) -> None:
    link = root / "patches" / relative
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(to)


LINKED = {
    "a patch that is a link out": (
        lambda root: link_out(root, "cpython/3.13/9999-evil.patch", "/etc/passwd"),
        "cpython/3.13/9999-evil.patch",
        "pythons.toml: [3.13.15].patches: patches/cpython/3.13/9999-evil.patch leads out of patches/ (to /etc/passwd)"),
    "a patch under a directory link out": (
        lambda root: link_out(root, "elsewhere", "/etc"),
        "elsewhere/passwd",
        "pythons.toml: [3.13.15].patches: patches/elsewhere/passwd leads out of patches/ (to /etc/passwd)"),
    "a patch that is a relative link out": (
        lambda root: link_out(root, "cpython/3.13/9999-up.patch", "../../../recipes/targets.toml"),
        "cpython/3.13/9999-up.patch",
        "pythons.toml: [3.13.15].patches: patches/cpython/3.13/9999-up.patch leads out of patches/ "
        "(to {root}/recipes/targets.toml)"),
    "a patch that is a directory": (
        lambda root: None,
        "cpython/3.13",
        "pythons.toml: [3.13.15].patches: missing patches/cpython/3.13 (a directory, not a file)"),
}


@pytest.mark.parametrize("verb", [("recipes", "check"), ("plan", "--python", "3.13.15", "--target", TARGET)],
                         ids=["recipes check", "plan"])
@pytest.mark.parametrize("case", LINKED, ids=list(LINKED))
def test_a_patch_outside_patches_is_refused_by_check_and_by_plan(case, verb, root, tmp_path):
    make, patch, expected = LINKED[case]
    make(root)
    with_patch(patch)(root)
    home = tmp_path / "home"
    before = snapshot(root, home)
    result = run(*verb, env=client_env(home, RELOCPY_ROOT=str(root)))
    assert refused(result, EXIT_RECIPE) == "relocpy: error: " + expected.format(root=root.resolve())
    assert snapshot(root, home) == before


ROOTS = {
    "a file": (lambda path: path.write_text(""), "{root}/recipes/targets.toml: cannot read: Not a directory"),
    "missing": (lambda path: None, "{root}/recipes/targets.toml: recipe file missing"),
    "a loop of links": (lambda path: path.symlink_to(path.name), "RELOCPY_ROOT={root}: a loop of symbolic links"),
}


@pytest.mark.parametrize("case", ROOTS, ids=list(ROOTS))
def test_a_project_root_with_no_recipes_is_one_line(case, tmp_path):
    make, expected = ROOTS[case]
    project = tmp_path / "project"
    make(project)
    before = snapshot(tmp_path)
    result = run("recipes", "list", env=client_env(tmp_path / "home", RELOCPY_ROOT=str(project)))
    assert refused(result, EXIT_RECIPE) == "relocpy: error: " + expected.format(root=project)
    assert snapshot(tmp_path) == before


def test_the_shipped_recipes_still_pass(root, tmp_path):
    """The cases above break one thing each in a copy that passes as it is."""
    result = run("recipes", "check", env=client_env(tmp_path / "home", RELOCPY_ROOT=str(root)))
    assert result.returncode == 0 and result.stdout.startswith("recipes ok: "), result.stderr
