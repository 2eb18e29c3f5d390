"""Where the project's data lives: recipes/, patches/, build/, ci/.

relocpy runs from its source tree (an editable install); RELOCPY_ROOT points
elsewhere when the data lives apart from the code.
"""

from __future__ import annotations

import os
from pathlib import Path

from relocpy.errors import RelocpyError


def project_root() -> Path:
    explicit = os.environ.get("RELOCPY_ROOT")
    if explicit:
        try:
            return Path(explicit).resolve()
        except RuntimeError:  # Python 3.11's resolve() on a loop of links
            raise RelocpyError(f"RELOCPY_ROOT={explicit}: a loop of symbolic links") from None
    candidates = [Path(__file__).resolve().parents[2], Path.cwd()]
    for candidate in candidates:
        if (candidate / "recipes").is_dir():
            return candidate
    raise RelocpyError(
        "cannot find the recipes/ directory: run from a relocpy checkout or set RELOCPY_ROOT"
    )


def recipes_dir() -> Path:
    return project_root() / "recipes"


def patches_dir() -> Path:
    return project_root() / "patches"


def templates_dir() -> Path:
    return project_root() / "build"


def ci_dir() -> Path:
    return project_root() / "ci"
