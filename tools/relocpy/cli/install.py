"""Verbs for the client side: install, list, run, uninstall."""

from __future__ import annotations

import os
import sys

from invoke import task

from relocpy import install as installer
from relocpy.cli.options import TRUST_HELP
from relocpy.errors import InstallError
from relocpy.settings import ClientSettings

CLIENT_HELP = {
    "index": "index URL or path (also RELOCPY_INDEX_URL or index_url in the config file)",
    "install_dir": "versions directory (also RELOCPY_INSTALL_DIR; default: <user data dir>/versions)",
    "variant": "build variant, e.g. freethreaded (default: the default build)",
    **TRUST_HELP,
}



def _help(*names: str, **extra: str) -> dict[str, str]:
    """Help text for just the flags a verb has (invoke refuses help for missing ones)."""
    return {**{n: CLIENT_HELP[n] for n in names}, **extra}


# Arguments after `--` for `relocpy run`, kept as a list (invoke joins them into one string).
RUN_ARGS: list[str] = []


def _settings(index=None, trusted_key=None, install_dir=None) -> ClientSettings:
    return ClientSettings.resolve(index_url=index, trusted_keys=list(trusted_key or []), install_dir=install_dir)


@task(
    positional=["spec"],
    iterable=["trusted_key"],
    help={
        "spec": "3.13, 3.13.15 or cpython@3.13",
        "flavor": "install_only or install_only_stripped (default: stripped if there is one)",
        "reinstall": "replace an installed version (atomically)",
        **_help("index", "install_dir", "variant", "trusted_key"),
    },
)
def install(c, spec, index=None, trusted_key=None, variant=None, flavor=None, reinstall=False, install_dir=None):
    """Install the best interpreter for this host from a signed index."""
    settings = _settings(index, trusted_key, install_dir)
    installer.install(spec, settings, variant=variant, flavor=flavor, reinstall=reinstall)


@task(name="list", iterable=["trusted_key"], help=_help("index", "install_dir", "trusted_key", available="also list what the index offers for this host"))
def list_(c, available=False, index=None, trusted_key=None, install_dir=None):
    """Installed interpreters (and, with --available, those the index offers for this host)."""
    settings = _settings(index, trusted_key, install_dir)
    for item in installer.installed(settings.install_dir):
        print(f"{item.name:<32} installed  {item.prefix}")
    if available:
        source, index_ = installer.fetch_index(settings)
        platforms = set(installer.host_platforms())
        for entry in index_.artifacts:
            if entry.platform_tag in platforms:
                print(f"{installer.install_name(entry.python_version, entry.variant):<32} available  {entry.name}")


@task(positional=["spec"], help=_help("variant", "install_dir", spec="3.13, 3.13.15 or cpython@3.13"))
def run(c, spec, variant=None, install_dir=None):
    """Run an installed interpreter: relocpy run 3.13 -- ARGS."""
    settings = _settings(install_dir=install_dir)
    item = installer.find_installed(spec, settings.install_dir, variant)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execv(item.python, [str(item.python), *RUN_ARGS])
    except OSError as exc:
        raise InstallError(f"cannot run {item.python}: {exc.strerror}") from None


@task(positional=["spec"], help=_help("variant", "install_dir", spec="3.13, 3.13.15 or cpython@3.13"))
def uninstall(c, spec, variant=None, install_dir=None):
    """Remove an installed interpreter."""
    settings = _settings(install_dir=install_dir)
    item = installer.uninstall(spec, settings.install_dir, variant)
    print(f"removed {item.name}")


TASKS = [install, list_, run, uninstall]
