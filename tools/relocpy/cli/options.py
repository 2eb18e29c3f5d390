"""Flags shared by several verbs, with their help text, in one place.

Only -h, -q and -v are short: a short flag means one thing everywhere.
"""

from __future__ import annotations

import argparse
import json
import sys


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def repeatable(parser, flag: str, help: str, **kwargs) -> None:
    parser.add_argument(flag, action="append", help=f"{help} (repeatable)", **kwargs)


def add_plan(parser, required: bool = True) -> None:
    parser.add_argument("--python", required=required, metavar="VERSION",
                        help="CPython version, e.g. 3.13.15 (or 3.13 when one patch release is known)")
    parser.add_argument("--target", required=required, metavar="TRIPLE",
                        help="target triple, e.g. x86_64-unknown-linux-gnu")
    parser.add_argument("--variant", metavar="VARIANT",
                        help="build options joined with '+', e.g. lto, noopt, debug, freethreaded "
                        "(default: the target's default variant)")


def add_fetch(parser) -> None:
    repeatable(parser, "--mirror", "mirror to try before upstream URLs: a directory or http(s) base URL holding "
               "files by name (also RELOCPY_MIRRORS, comma-separated)", metavar="DIR_OR_URL")
    parser.add_argument("--cache-dir", metavar="DIR",
                        help="content-addressed cache directory (default: RELOCPY_CACHE_DIR or ~/.cache/relocpy)")
    parser.add_argument("--offline", action="store_true",
                        help="never touch the network: only the cache and directory mirrors")


def add_trust(parser) -> None:
    repeatable(parser, "--trusted-key", "public key to trust: 'ed25519:<base64>' or a file holding it "
               "(also RELOCPY_TRUSTED_KEYS, comma-separated, or trusted_keys in the config file)", metavar="KEY")
    parser.add_argument("--channel", metavar="NAME", help="the channel the index must be of; another channel's "
                        "index is refused (also RELOCPY_CHANNEL or channel in the config file; default: stable)")


def add_json(parser, what: str) -> None:
    parser.add_argument("--json", action="store_true", help=f"print {what} as JSON on stdout")


def fetch_settings(args, **extra):
    from relocpy.settings import FetchSettings

    return FetchSettings.resolve(cache_dir=args.cache_dir, mirrors=list(args.mirror or []),
                                 offline=args.offline, **extra)


def print_rows(rows: list[dict], as_json: bool, line: str, hidden: frozenset | set = frozenset()) -> None:
    """A listing verb's output: the rows as JSON (without display-only fields), or one formatted line each."""
    if as_json:
        print_json([{k: v for k, v in row.items() if k not in hidden} for row in rows])
        return
    for row in rows:
        print(line.format(**row))


def print_json(value) -> None:
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    json.dump(value, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")
