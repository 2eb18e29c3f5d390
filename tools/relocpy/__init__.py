"""relocpy: build farm for relocatable CPython interpreters."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("relocpy")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+source"
