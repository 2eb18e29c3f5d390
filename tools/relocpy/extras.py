"""Modules that come with an extra, not with `pip install relocpy`.

A consumer install holds what install, list, run and uninstall need. Building
and validating (zig, pyelftools, jinja2, zstandard) want relocpy[build];
publishing to S3 (boto3) wants relocpy[s3]. `require` imports such a module or
says in one line which extra brings it; `Lazy` does so on the module's first
use, so that importing the build side (as `relocpy --help` does) needs no extra.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from relocpy.errors import MissingExtra


def require(extra: str, module: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = (exc.name or module).partition(".")[0]
        if missing == "relocpy":
            raise  # a bug of relocpy's own, not a missing extra
        raise MissingExtra(
            f"the {missing} module is not installed: it comes with relocpy[{extra}] (pip install 'relocpy[{extra}]')"
        ) from None


class Lazy:
    """A module that `require` imports on first attribute access."""

    def __init__(self, extra: str, module: str):
        self._extra, self._module = extra, module

    def __getattr__(self, name: str):
        return getattr(require(self._extra, self._module), name)

    def __repr__(self) -> str:
        return f"<{self._module}, imported on first use (relocpy[{self._extra}])>"
