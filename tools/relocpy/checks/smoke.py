"""Run BY THE BUILT INTERPRETER: exercise every bundled library once.

Prints one JSON object: {"ok": [...], "failed": {name: reason}, "facts": {...}}.
Argument: an optional path to a JSON file with {"tls_port": N, "tls_host": H}
for the TLS check against a loopback server whose CA sits in the system store.
"""

import json
import os
import sys
import traceback

ok, failed, facts = [], {}, {}


def check(name):
    def wrap(fn):
        try:
            result = fn()
            if result is not None:
                facts[name] = result
            ok.append(name)
        except BaseException:  # report everything, including SystemExit from a module
            failed[name] = traceback.format_exc(limit=3).strip().splitlines()[-1]
        return fn

    return wrap


@check("paths")
def _():
    import sysconfig

    prefix = os.path.realpath(sys.prefix)
    exe = os.path.realpath(sys.executable)
    assert exe.startswith(prefix + os.sep), (exe, prefix)
    for key in ("stdlib", "platstdlib", "include", "scripts", "data"):
        path = sysconfig.get_path(key)
        assert os.path.realpath(path).startswith(prefix), (key, path)
    for var in ("prefix", "exec_prefix", "LIBDIR", "LIBPL", "INCLUDEPY", "BINDIR", "CONFINCLUDEPY"):
        value = sysconfig.get_config_var(var)
        assert value and os.path.realpath(value).startswith(prefix), (var, value)
        assert os.path.exists(value), (var, value)
    return {"prefix": sys.prefix}


@check("ssl")
def _():
    import ssl

    ctx = ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    stats = ctx.cert_store_stats()
    assert stats["x509_ca"] > 0, f"no CA certificates loaded from the system store: {stats}"
    return {"openssl": ssl.OPENSSL_VERSION, "x509_ca": stats["x509_ca"]}


@check("tls_handshake")
def _():
    if len(sys.argv) < 2:
        return "skipped: no server"
    import socket
    import ssl

    server = json.load(open(sys.argv[1]))
    ctx = ssl.create_default_context()
    with socket.create_connection(("127.0.0.1", server["tls_port"]), timeout=10) as sock:
        with ctx.wrap_socket(sock, server_hostname=server["tls_host"]) as tls:
            assert tls.version() == "TLSv1.3", tls.version()
            return {"version": tls.version(), "peer": dict(x[0] for x in tls.getpeercert()["subject"])}


@check("sqlite3")
def _():
    import sqlite3

    db = sqlite3.connect(":memory:")
    db.execute("create virtual table t using fts5(body)")
    db.execute("insert into t values ('relocatable python interpreters')")
    assert db.execute("select count(*) from t where t match 'python'").fetchone()[0] == 1
    assert db.execute("select json_extract('{\"a\": [1, 2]}', '$.a[1]')").fetchone()[0] == 2
    db.execute("create virtual table r using rtree(id, x0, x1)")
    assert db.execute("select round(sqrt(16))").fetchone()[0] == 4
    assert hasattr(db, "enable_load_extension")
    return sqlite3.sqlite_version


@check("compression")
def _():
    import bz2
    import lzma
    import zlib

    data = b"relocatable " * 1000
    for mod in (zlib, bz2, lzma):
        assert mod.decompress(mod.compress(data)) == data, mod.__name__
    return {"zlib": zlib.ZLIB_RUNTIME_VERSION}


@check("ctypes")
def _():
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(None)
    assert libc.strlen(b"relocpy") == 7
    return None


@check("decimal")
def _():
    import decimal

    assert str(decimal.Decimal(1) / decimal.Decimal(7))[:8] == "0.142857"
    import _decimal  # the C implementation, linked to libmpdec

    return _decimal.__libmpdec_version__


@check("readline")
def _():
    import readline

    readline.add_history("relocpy")
    assert readline.get_history_item(1) == "relocpy"
    return getattr(readline, "_READLINE_LIBRARY_VERSION", None)


@check("curses")
def _():
    import _curses
    import curses

    return ".".join(map(str, curses.ncurses_version)) if hasattr(curses, "ncurses_version") else None


@check("uuid")
def _():
    import _uuid
    import uuid

    assert uuid.uuid1().version == 1
    return _uuid.has_uuid_generate_time_safe


@check("hashlib")
def _():
    import hashlib

    assert hashlib.sha3_256(b"").hexdigest().startswith("a7ffc6f8bf1ed766")
    assert hashlib.blake2b(b"").hexdigest().startswith("786a02f742015903")
    assert "sha256" in hashlib.algorithms_available
    return None


@check("xml")
def _():
    import pyexpat
    import xml.etree.ElementTree as ET

    assert ET.fromstring("<a><b>1</b></a>").find("b").text == "1"
    return pyexpat.EXPAT_VERSION


@check("extension_modules")
def _():
    """Every extension module configure built imports; none went missing
    silently. Returns the ones imported, for the artifact's metadata."""
    import importlib
    import sysconfig

    excluded = set(json.loads(os.environ.get("RELOCPY_EXCLUDED_MODULES", "[]")))
    absent_ok = set(json.loads(os.environ.get("RELOCPY_ABSENT_OK", "[]")))
    missing, broken, imported = [], [], []
    for key, state in sysconfig.get_config_vars().items():
        if not (key.startswith("MODULE_") and key.endswith("_STATE")):
            continue
        name = key[len("MODULE_"):-len("_STATE")].lower()
        if state in ("missing", "disabled") and name not in excluded:
            missing.append(name)
        elif state == "yes" and name not in absent_ok:
            try:
                importlib.import_module(name)
                imported.append(name)
            except Exception as exc:
                broken.append(f"{name} ({exc})")
    assert not missing, "not built and not excluded by the recipe: " + ", ".join(sorted(missing))
    assert not broken, "built but not importable: " + ", ".join(broken)
    return sorted(imported)


print(json.dumps({"ok": ok, "failed": failed, "facts": facts}, default=str))
