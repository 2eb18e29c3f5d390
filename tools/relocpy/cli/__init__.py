"""The `relocpy` command: an invoke Program over the task collections below.

Each module of this package holds the verbs of one area. Verbs in a
sub-collection are typed with a space (`relocpy recipes check`); invoke's own
dotted form (`relocpy recipes.check`) works too.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys

from invoke import Collection, Program

from relocpy import __version__
from relocpy.cli import install
from relocpy.errors import RelocpyError
from relocpy.progress import console

AREAS = ["sources", "build", "ci", "image", "trust", "install"]
CLIENT_VERBS = {"install", "list", "run", "uninstall"}


def areas(argv: list[str]) -> list:
    """The client verbs need only their own area: importing the build side costs ~0.3 s a call."""
    if len(argv) >= 2 and argv[1] in CLIENT_VERBS:
        return [install]
    return [importlib.import_module(f"relocpy.cli.{name}") for name in AREAS]


def namespace(argv: list[str] | None = None) -> Collection:
    root = Collection()
    for area in areas(argv or []):
        for task in getattr(area, "TASKS", []):
            root.add_task(task)
        for name, tasks in getattr(area, "COLLECTIONS", {}).items():
            root.add_collection(Collection(name, *tasks))
    return root


class RelocpyProgram(Program):
    def print_help(self) -> None:
        print(f"Usage: {self.binary} <command> [--options]   ({self.binary} <command> --help for its flags)")
        print()
        print("Build relocatable CPython interpreters from pinned sources, and publish and install them.")
        print("Global options: --help, --version, --list")
        print()
        self.list_tasks()


def join_subcommand(argv: list[str], root: Collection) -> list[str]:
    """`relocpy recipes check ...` -> `relocpy recipes.check ...`."""
    if len(argv) >= 3 and argv[1] in root.collections:
        sub = root.collections[argv[1]]
        if argv[2] in sub.tasks or argv[2] in sub.task_names:
            return [argv[0], f"{argv[1]}.{argv[2]}", *argv[3:]]
    return argv


def split_run_args(argv: list[str]) -> list[str]:
    """`relocpy run 3.13 -- ARGS`: keep ARGS as a list, quoting intact, for the run verb."""
    if len(argv) >= 2 and argv[1] == "run" and "--" in argv:
        cut = argv.index("--")
        install.RUN_ARGS[:] = argv[cut + 1:]
        return argv[:cut]
    return argv


def help_first(argv: list[str], root: Collection) -> list[str]:
    """`relocpy install --help` -> `relocpy --help install` (a positional would take '--help')."""
    if len(argv) >= 3 and argv[2] in ("--help", "-h") and (argv[1] in root.tasks or argv[1] in root.task_names):
        return [argv[0], "--help", argv[1]]
    return argv


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv if argv is None else argv)
    root = namespace(argv)
    argv = help_first(join_subcommand(split_run_args(argv), root), root)
    program = RelocpyProgram(namespace=root, version=__version__, name="relocpy", binary="relocpy")
    # A terminated build cleans up like an interrupted one (stops its step's
    # processes, leaves nothing in --dist).
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        program.run(argv)
    except RelocpyError as exc:
        console.file.flush()
        print(f"relocpy: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("relocpy: interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:
        # The reader went away (`relocpy recipes list | head`): not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
