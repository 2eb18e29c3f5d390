"""The command line behaves: help for every group, suggestions for typos, one
line and exit 2 for every usage error, positionals and repeatable flags shown
as such, one meaning per short flag, --json on every listing verb."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from relocpy.cli import build_parser

from support import one_error_line


def relocpy(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    # No mirror from the environment (.ci/run sets one): a fetch here has nowhere to fetch from.
    env = {k: v for k, v in os.environ.items() if k != "RELOCPY_MIRRORS"}
    return subprocess.run([sys.executable, "-m", "relocpy", *args], capture_output=True, text=True, cwd=cwd, env=env)


def usage_error(*args: str, cwd: Path | None = None) -> str:
    result = relocpy(*args, cwd=cwd)
    assert result.returncode == 2, result.stdout + result.stderr
    line = one_error_line(result)
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    return line


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    found = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(found[0].choices) if found else {}


def every_verb() -> list[tuple[str, argparse.ArgumentParser]]:
    verbs = []
    for name, parser in subparsers(build_parser()).items():
        children = subparsers(parser)
        verbs += [(f"{name} {child}", sub) for child, sub in children.items()] if children else [(name, parser)]
    return verbs


@pytest.mark.parametrize("group", ["recipes", "keys", "index", "image", "ci"])
def test_every_group_has_help_listing_its_verbs(group):
    result = relocpy(group, "--help")
    assert result.returncode == 0, result.stderr
    for verb in subparsers(build_parser())[group]._actions[-1].choices:
        assert verb in result.stdout
    assert "a command is needed" in usage_error(group)


@pytest.mark.parametrize(
    "args, expected",
    [
        (["buidl"], "unknown command 'buidl' (did you mean 'build'?)"),
        (["index", "verfy"], "unknown command 'verfy' (did you mean 'verify'?)"),
        (["build", "--python", "3.13", "--target", "t", "--jbos", "2"], "unknown flag --jbos (did you mean '--jobs'?)"),
        (["build", "--jbos", "2"], "unknown flag --jbos (did you mean '--jobs'?)"),
        (["ci", "matrix", "--event", "pushh"], "unknown value 'pushh' (did you mean 'push'?)"),
    ],
)
def test_a_typo_gets_a_suggestion(args, expected):
    assert expected in usage_error(*args)


@pytest.mark.parametrize(
    "args, expected",
    [
        (["index", "build", "dist", "--sign", "k"], "required: --base-url"),
        (["index", "export-uv", "index.json"], "required: --out"),
        (["publish", "dist"], "required: --to"),
        (["build", "--python", "3.13", "--target", "x86_64-unknown-linux-gnu", "--jobs", "many"], "--jobs: not a whole number: 'many'"),
        (["fetch", "--all", "--jobs", "0"], "--jobs: must be 1 or more"),
        (["validate"], "required: PATH"),
    ],
)
def test_a_missing_or_ill_typed_value_is_one_line_and_exit_2(args, expected):
    assert expected in usage_error(*args)


def test_positionals_look_like_positionals_and_repeatable_flags_say_so():
    publish = relocpy("publish", "--help").stdout
    assert "usage: relocpy publish [-h] --to DIR_OR_S3_URL" in " ".join(publish.split())
    assert "DIST" in publish and "--dist" not in publish
    for name, parser in every_verb():
        for action in parser._actions:
            if isinstance(action, argparse._AppendAction):
                assert "(repeatable)" in action.help, f"relocpy {name} {action.option_strings}"


def test_short_flags_mean_one_thing_everywhere():
    meanings: dict[str, set[str]] = {}
    for name, parser in [("relocpy", build_parser()), *every_verb()]:
        for action in parser._actions:
            for flag in action.option_strings:
                if not flag.startswith("--"):
                    meanings.setdefault(flag, set()).add(action.dest)
    assert set(meanings) <= {"-h", "-q", "-v"}, meanings
    assert all(len(dests) == 1 for dests in meanings.values()), meanings


@pytest.mark.parametrize("verb", ["recipes list", "plan", "list", "index verify", "ci matrix", "build"])
def test_every_listing_verb_has_json(verb):
    parser = dict(every_verb())[verb]
    assert any("--json" in action.option_strings for action in parser._actions)


def test_quiet_prints_results_only_and_verbose_more(tmp_path):
    normal = relocpy("fetch", "--python", "3.13.15", "--target", "x86_64-unknown-linux-gnu",
                     "--cache-dir", str(tmp_path), "--offline", "--mirror", str(tmp_path))
    quiet = relocpy("-q", "fetch", "--python", "3.13.15", "--target", "x86_64-unknown-linux-gnu",
                    "--cache-dir", str(tmp_path), "--offline", "--mirror", str(tmp_path))
    # Both fail (nothing to fetch from), in the same one line; -q drops the chatter before it.
    assert one_error_line(normal) == one_error_line(quiet)
    assert len(quiet.stderr.splitlines()) <= len(normal.stderr.splitlines())
    rows = json.loads(relocpy("-q", "recipes", "list", "--json").stdout)
    assert rows and {"target", "python", "variant", "buildable", "reason"} <= set(rows[0])


def test_validate_refuses_an_empty_directory_and_a_missing_path(tmp_path):
    assert "no artifact archives" in usage_error("validate", str(tmp_path))
    assert "no such file or directory" in usage_error("validate", str(tmp_path / "missing"))


def test_a_bad_build_tag_is_refused_before_anything_is_fetched(tmp_path):
    cache = tmp_path / "cache"
    line = usage_error("build", "--python", "3.13.15", "--target", "x86_64-unknown-linux-gnu", "--runner", "native",
                       "--build-tag", "2026-12-01", "--cache-dir", str(cache), "--offline", "--dist", str(tmp_path / "d"))
    assert "bad build tag '2026-12-01'" in line
    assert not cache.exists() and not (tmp_path / "d").exists()


def test_recipes_list_and_build_agree_on_what_is_buildable():
    rows = json.loads(relocpy("recipes", "list", "--json").stdout)
    x86_64 = {r["variant"]: r["buildable"] for r in rows if r["target"] == "x86_64-unknown-linux-gnu"}
    assert x86_64["pgo+lto"] and x86_64["pgo+lto+x86_64_v3"] and x86_64["noopt"]
    assert not any(r["variant"].endswith("x86_64_v3") for r in rows if r["target"].startswith("aarch64"))
    refused = [r for r in rows if not r["buildable"]]
    row = refused[0]
    line = usage_error("plan", "--python", row["python"], "--target", row["target"], "--variant", row["variant"])
    assert row["reason"] in line
