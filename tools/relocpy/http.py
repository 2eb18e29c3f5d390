"""GET over http(s) with the standard library, for downloads and index reads.

http.client reads a body at close to socket speed; a pure-Python HTTP stack
costs several times that per megabyte, which showed as the largest share of
an install from a fast server. The CA bundle is loaded only for https, and
once per process.
"""

from __future__ import annotations

import functools
import http.client
import os
import ssl
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


class _VerifiedHttps(urllib.request.HTTPSHandler):
    def https_open(self, req):
        return self.do_open(http.client.HTTPSConnection, req, context=tls_context())


@functools.cache
def _opener() -> urllib.request.OpenerDirector:
    # Redirects and proxy variables are followed as any client does; TLS is always verified.
    return urllib.request.build_opener(_VerifiedHttps())


@contextmanager
def get(url: str, timeout: float, headers: dict[str, str] | None = None):
    """The response of a GET; raises urllib.error.HTTPError for a 4xx/5xx status.

    timeout is per socket operation: a stalled body raises TimeoutError.
    """
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, **(headers or {})})
    with _opener().open(request, timeout=timeout) as response:
        yield response


def describe(exc: BaseException) -> str:
    """One short reason for a failed request."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    reason = getattr(exc, "reason", None)  # URLError wraps the socket's error
    if isinstance(exc, TimeoutError) or isinstance(reason, TimeoutError):
        return "timed out (stalled)"
    return str(reason or exc) or type(exc).__name__
