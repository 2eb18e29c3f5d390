"""Verbs for the client side: install, list, run, uninstall.

Handlers import only the client half of the library: no toolchain, no build.
"""

from __future__ import annotations

import os
import sys

from relocpy.cli import verb
from relocpy.cli.options import add_json, add_trust

SPEC_HELP = "3.13, 3.13.15 or cpython@3.13"


def _add_index(parser) -> None:
    parser.add_argument("--index", metavar="URL", help="index URL or path (also RELOCPY_INDEX_URL or index_url in the config file)")
    add_trust(parser)


def _add_install_dir(parser) -> None:
    parser.add_argument("--install-dir", metavar="DIR",
                        help="versions directory (also RELOCPY_INSTALL_DIR; default: <user data dir>/versions)")


def _add_variant(parser) -> None:
    parser.add_argument("--variant", metavar="VARIANT", help="build variant, e.g. freethreaded (default: the default build)")


def register(commands) -> None:
    parser = verb(commands, "install", install, "install the best interpreter for this host from a signed index")
    parser.add_argument("spec", metavar="SPEC", help=SPEC_HELP)
    _add_index(parser)
    _add_variant(parser)
    parser.add_argument("--flavor", choices=["install_only_stripped", "install_only"],
                        help="which archive to install (default: the stripped one if the index has it)")
    parser.add_argument("--reinstall", action="store_true", help="replace an installed version (atomically)")
    _add_install_dir(parser)

    parser = verb(commands, "list", list_, "installed interpreters (and, with --available, what the index offers this host)")
    parser.add_argument("--available", action="store_true", help="also list what the index offers for this host")
    _add_index(parser)
    _add_install_dir(parser)
    add_json(parser, "the interpreters")

    parser = verb(commands, "run", run, "run an installed interpreter: relocpy run 3.13 -- ARGS")
    parser.add_argument("spec", metavar="SPEC", help=SPEC_HELP)
    _add_variant(parser)
    _add_install_dir(parser)

    parser = verb(commands, "uninstall", uninstall, "remove an installed interpreter")
    parser.add_argument("spec", metavar="SPEC", help=SPEC_HELP)
    _add_variant(parser)
    _add_install_dir(parser)


def _settings(args):
    from relocpy.settings import ClientSettings

    return ClientSettings.resolve(
        index_url=getattr(args, "index", None),
        trusted_keys=list(getattr(args, "trusted_key", None) or []),
        install_dir=args.install_dir,
        channel=getattr(args, "channel", None),
    )


def install(args) -> None:
    from relocpy import install as installer

    installer.install(args.spec, _settings(args), variant=args.variant, flavor=args.flavor, reinstall=args.reinstall)


def list_(args) -> None:
    from relocpy import install as installer
    from relocpy.cli.options import print_rows
    from relocpy.progress import warn

    settings = _settings(args)
    rows = []
    for item in installer.installed(settings.install_dir):
        if item.problem:
            warn(f"{item.name} is broken: {item.problem} (relocpy install {item.version} --reinstall)")
        rows.append({"name": item.name, "state": "broken" if item.problem else "installed", "where": str(item.prefix)})
    if args.available:
        _, index = installer.fetch_index(settings)
        hosts = installer.host_platforms()
        rows += [{"name": installer.install_name(entry.python_version, entry.variant), "state": "available",
                  "where": entry.name}
                 for entry in index.artifacts if installer.fits_host(entry, hosts)]
    print_rows(rows, args.json, "{name:<32} {state:<10} {where}")


def run(args) -> None:
    from relocpy import install as installer
    from relocpy.errors import InstallError

    item = installer.find_installed(args.spec, _settings(args).install_dir, args.variant)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execv(item.python, [str(item.python), *args.passthrough])
    except OSError as exc:
        raise InstallError(f"cannot run {item.python}: {exc.strerror}") from None


def uninstall(args) -> None:
    from relocpy import install as installer

    item = installer.uninstall(args.spec, _settings(args), args.variant)
    print(f"removed {item.name}")
