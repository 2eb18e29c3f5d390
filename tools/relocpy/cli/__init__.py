"""The `relocpy` command line, on argparse.

Each module of this package registers the verbs of one area on the parser
(`register(commands)`); a group of verbs is a sub-parser of its own
(`relocpy recipes check`), so `relocpy recipes --help` lists them. Handlers
import the library lazily: `relocpy install` must not pay for the build side.

Usage errors (a typo, a missing or ill-typed value) are one
`relocpy: error:` line and exit 2, with a suggestion where one is close.
`main` is the one place that turns failures into that line: a `RelocpyError`
(its own exit code), a file the system refused (an `OSError` no layer turned
into an error of its own: the file and the system's reason, exit 2), and an
interrupt (exit 130, 143 for SIGTERM) after every `finally` has cleaned up.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import signal
import sys

from relocpy import __version__
from relocpy.errors import RelocpyError

AREAS = ("sources", "build", "trust", "install", "image", "ci")
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a process Ctrl-C stopped
EXIT_TERMINATED = 143  # 128 + SIGTERM


class UsageFailure(Exception):
    """argparse found a usage error; main() prints it as one line."""

    def __init__(self, command: str, message: str):
        super().__init__(message)
        self.command = command


class Parser(argparse.ArgumentParser):
    """argparse, but errors become one line with a suggestion, not usage + exit."""

    def parse_known_args(self, args=None, namespace=None):
        self._words = list(args or [])  # for error(): argparse checks required flags before unknown ones
        return super().parse_known_args(args, namespace)

    def error(self, message: str):
        unknown = [w for w in getattr(self, "_words", []) if w.startswith("-") and not self._knows(w)]
        if unknown and message.startswith("the following arguments are required"):
            message = _unknown_argument(self, unknown[0])  # the typo is the likelier cause
        raise UsageFailure(self.prog, _with_suggestion(self, message))

    def _knows(self, word: str) -> bool:
        flag = word.split("=", 1)[0]
        return word == "--" or any(flag in action.option_strings for action in self._actions)


def _with_suggestion(parser: argparse.ArgumentParser, message: str) -> str:
    bad = re.match(r"argument (\S+): invalid choice: '?([^' ]*)'?", message)
    if not bad:
        return message.removeprefix("argument ")
    name, word = bad.groups()
    action = next(a for a in parser._actions if name in (*a.option_strings, a.metavar, a.dest))
    choices = list(action.choices)
    problem = f"unknown command '{word}'" if not action.option_strings else f"{name}: unknown value '{word}'"
    return _suggest(problem, word, choices, f"known: {', '.join(choices)}")


def _suggest(problem: str, word: str, candidates, fallback: str) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"{problem} (did you mean '{close[0]}'?)" if close else f"{problem} ({fallback})"


def build_parser() -> Parser:
    from importlib import import_module

    parser = Parser(
        prog="relocpy",
        description="Build relocatable CPython interpreters from pinned sources, and publish and install them.",
        epilog="`relocpy COMMAND --help` explains a command's flags.",
    )
    parser.add_argument("--version", action="version", version=f"relocpy {__version__}")
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-q", "--quiet", action="store_true", help="print only results, warnings and errors")
    verbosity.add_argument("-v", "--verbose", action="store_true", help="also print each command a step runs and its log file")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands", parser_class=Parser)
    for area in AREAS:
        import_module(f"relocpy.cli.{area}").register(commands)
    return parser


def group(commands, name: str, help: str):
    """A group of verbs (`relocpy NAME VERB`); returns where its verbs are added."""
    parser = commands.add_parser(name, help=help, description=help)
    parser.set_defaults(handler=None, group_parser=parser)
    return parser.add_subparsers(dest="verb", metavar="VERB", title="commands", parser_class=Parser)


def verb(commands, name: str, handler, help: str, description: str | None = None) -> Parser:
    parser = commands.add_parser(name, help=help, description=description or help)
    parser.set_defaults(handler=handler, verb_parser=parser)
    return parser


def _split_run_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """`relocpy run 3.13 -- ARGS`: ARGS go to the interpreter untouched."""
    if argv and argv[0] == "run" and "--" in argv:
        cut = argv.index("--")
        return argv[:cut], argv[cut + 1:]
    return argv, []


def parse(argv: list[str]) -> argparse.Namespace:
    argv, passthrough = _split_run_args(argv)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    args.passthrough = passthrough
    if extra:
        leaf = getattr(args, "verb_parser", None) or getattr(args, "group_parser", None) or parser
        raise UsageFailure(leaf.prog, _unknown_argument(leaf, extra[0]))
    if args.command is None:
        raise UsageFailure("relocpy", "a command is needed (see `relocpy --help`)")
    if args.handler is None:
        group_parser = args.group_parser
        names = ", ".join(group_parser._subparsers._group_actions[0].choices)
        raise UsageFailure(group_parser.prog, f"a command is needed: {names}")
    return args


def _unknown_argument(parser: argparse.ArgumentParser, word: str) -> str:
    if not word.startswith("-"):
        return f"unexpected argument '{word}'"
    flag = word.split("=", 1)[0]
    flags = [option for action in parser._actions for option in action.option_strings]
    return _suggest(f"unknown flag {flag}", flag, flags, f"see `{parser.prog} --help`")


class Terminated(KeyboardInterrupt):
    """SIGTERM: a KeyboardInterrupt, so that everything an interrupt cleans up it cleans up too."""


def _raise_terminated(signum, frame):
    raise Terminated


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv[1:])
    # A terminated build cleans up like an interrupted one (stops its step's
    # processes, leaves nothing in --dist).
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        args = parse(argv)
        from relocpy import progress

        progress.set_verbosity(-1 if args.quiet else 1 if args.verbose else 0)
        args.handler(args)
    except UsageFailure as exc:
        _fail(f"{exc.command.removeprefix('relocpy').strip() + ': ' if exc.command != 'relocpy' else ''}{exc}",
              EXIT_USAGE)
    except RelocpyError as exc:
        _fail(str(exc), exc.exit_code)
    except Terminated:
        _fail("terminated", EXIT_TERMINATED)
    except KeyboardInterrupt:
        _fail("interrupted", EXIT_INTERRUPTED)
    except BrokenPipeError:
        # The reader went away (`relocpy recipes list | head`): not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    except OSError as exc:
        _fail(_os_error(exc), EXIT_USAGE)


def _os_error(exc: OSError) -> str:
    """The file the system refused and its reason, e.g. a read-only data
    directory: `/home/me/.local/share/relocpy/state.json: Read-only file system`."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.filename is None:
        return reason
    names = " -> ".join(os.fsdecode(name) for name in (exc.filename, exc.filename2) if name is not None)
    return f"{names}: {reason}"


def _fail(message: str, code: int) -> None:
    from relocpy.progress import console

    console.file.flush()
    print(f"relocpy: error: {message}", file=sys.stderr)
    sys.exit(code)
