"""GET over http(s) with the standard library, for downloads and index reads.

http.client reads a body at close to socket speed; a pure-Python HTTP stack
costs several times that per megabyte, which showed as the largest share of
an install from a fast server. The CA bundle is loaded only for https, and
once per process.

A socket timeout bounds one read only: a server sending a byte now and then
never trips it. A request given a deadline has its connections shut down
when the deadline comes, whatever they wait for (headers, a redirect, the
body), so that any read under way returns at once.
"""

from __future__ import annotations

import functools
import http.client
import os
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager

USER_AGENT = "relocpy"
# Errors a request can end in; a status error (urllib.error.HTTPError) carries .code.
ERRORS = (OSError, http.client.HTTPException)


@functools.cache
def tls_context() -> ssl.SSLContext:
    """SSL_CERT_FILE / SSL_CERT_DIR when set, else certifi's bundle, as httpx chose."""
    cafile, capath = os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
    if not (cafile or capath):
        import certifi

        cafile = certifi.where()
    return ssl.create_default_context(cafile=cafile, capath=capath)


# The sockets the current thread's request opened, for its deadline to shut down.
_open_sockets = threading.local()


def _watch(sock) -> None:
    watched = getattr(_open_sockets, "list", None)
    if watched is not None:
        watched.append(sock)


class _WatchedHttp(http.client.HTTPConnection):
    def connect(self):
        super().connect()
        _watch(self.sock)


class _WatchedHttps(http.client.HTTPSConnection):
    def connect(self):
        super().connect()
        _watch(self.sock)


class _Http(urllib.request.HTTPHandler):
    def http_open(self, req):
        return self.do_open(_WatchedHttp, req)


class _VerifiedHttps(urllib.request.HTTPSHandler):
    def https_open(self, req):
        return self.do_open(_WatchedHttps, req, context=tls_context())


@functools.cache
def _opener() -> urllib.request.OpenerDirector:
    # Redirects and proxy variables are followed as any client does; TLS is always verified.
    return urllib.request.build_opener(_Http(), _VerifiedHttps())


@contextmanager
def get(url: str, timeout: float, headers: dict[str, str] | None = None, deadline: float | None = None):
    """The response of a GET; raises urllib.error.HTTPError for a 4xx/5xx status.

    timeout is per socket operation: a stalled body raises TimeoutError.
    deadline (a time.monotonic() value): past it, the connection is shut and
    a read under way ends (an OSError, or a body that stops short).
    """
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, **(headers or {})})
    with _deadline(deadline):
        with _opener().open(request, timeout=timeout) as response:
            yield response


@contextmanager
def _deadline(deadline: float | None):
    if deadline is None:
        yield
        return
    _open_sockets.list = sockets = []
    timer = threading.Timer(max(0.0, deadline - time.monotonic()), _shut_down, [sockets])
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        _open_sockets.list = None


def _shut_down(sockets: list) -> None:
    for sock in list(sockets):
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # closed already


def describe(exc: BaseException) -> str:
    """One short reason for a failed request."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    reason = getattr(exc, "reason", None)  # URLError wraps the socket's error
    if isinstance(exc, TimeoutError) or isinstance(reason, TimeoutError):
        return "timed out (stalled)"
    return str(reason or exc) or type(exc).__name__
