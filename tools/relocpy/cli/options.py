"""Flags shared by several verbs, with their help text, in one place."""

from __future__ import annotations

import json
import sys

from pydantic import BaseModel

from relocpy.errors import UsageError
from relocpy.settings import FetchSettings

FETCH_HELP = {
    "mirror": "mirror to try before upstream URLs: a directory or http(s) base URL holding files by name "
    "(repeatable; also RELOCPY_MIRRORS, comma-separated)",
    "cache_dir": "content-addressed cache directory (default: RELOCPY_CACHE_DIR or ~/.cache/relocpy)",
    "offline": "never touch the network: only the cache and directory mirrors",
}
TRUST_HELP = {
    "trusted_key": "public key to trust: 'ed25519:<base64>' or a file holding it (repeatable; "
    "also RELOCPY_TRUSTED_KEYS, comma-separated, or trusted_keys in the config file)",
}
PLAN_HELP = {
    "python": "CPython version, e.g. 3.13.15 (or 3.13 when one patch release is known)",
    "target": "target triple, e.g. x86_64-unknown-linux-gnu",
    "variant": "build options joined with '+', e.g. pgo+lto, noopt, debug, freethreaded (default: the recipes' default)",
}


def fetch_settings(mirror=None, cache_dir=None, offline=False, **extra) -> FetchSettings:
    return FetchSettings.resolve(cache_dir=cache_dir, mirrors=list(mirror or []), offline=offline, **extra)


def print_json(value) -> None:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    json.dump(value, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")


def require_python_and_target(python: str | None, target: str | None) -> tuple[str, str]:
    if not python or not target:
        raise UsageError("--python and --target are both required (see `relocpy recipes list`)")
    return python, target
