"""Reading the small TOML files people edit: the recipes, ci/settings.toml and
the client's config file.

Whatever is wrong with such a file (missing, a directory, unreadable, not
UTF-8, not TOML, nested absurdly deep) is one line naming the file, raised as
the caller's error type, so that each caller keeps its own exit code.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from relocpy.errors import RelocpyError

# Deeper than any of these files needs (the recipes nest four levels); a
# deeper file is a mistake or an attack on the parser's recursion.
MAX_DEPTH = 16


def read_toml(path: Path, error: type[RelocpyError] = RelocpyError, missing: str = "file missing") -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{path}: {missing}") from None
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text (byte {exc.start} is {raw[exc.start]:#04x})") from None
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        raise error(f"{path}: not valid TOML: nested deeper than {MAX_DEPTH} levels") from None
    if _depth(data) > MAX_DEPTH:
        raise error(f"{path}: nested deeper than {MAX_DEPTH} levels")
    return data


def _depth(value: Any) -> int:
    """How deep tables and arrays nest, counted without recursion."""
    deepest, pending = 0, [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth + 1)
            pending += [(child, depth + 1) for child in (item.values() if isinstance(item, dict) else item)]
    return deepest
