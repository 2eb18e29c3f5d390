"""Fixtures the runtime validation needs: a TLS server on loopback whose
certificate is signed by a fresh test CA, and a tiny wheel to install offline."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
import zipfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SYSTEM_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
SERVER_NAME = "relocpy-validation.test"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_ca_and_server_cert(directory: Path) -> tuple[Path, Path, Path]:
    """Write ca.pem, server.pem and server.key; return their paths."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("relocpy validation CA"))
        .issuer_name(_name("relocpy validation CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(SERVER_NAME))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(SERVER_NAME)]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


class LoopbackTLSServer:
    """TLS 1.3 server on 127.0.0.1 answering each connection with a greeting."""

    def __init__(self, directory: Path):
        self.directory = directory / "tls"
        self.directory.mkdir(parents=True, exist_ok=True)
        self.ca, cert, key = make_ca_and_server_cert(self.directory)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_3
        self.context.load_cert_chain(cert, key)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.bundle = self.directory / "ca-certificates.crt"
        system = SYSTEM_BUNDLE.read_bytes() if SYSTEM_BUNDLE.is_file() else b""
        self.bundle.write_bytes(system + b"\n" + self.ca.read_bytes())
        self.info_file = self.directory / "server.json"
        self.info_file.write_text(json.dumps({"tls_port": self.port, "tls_host": SERVER_NAME}))
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> LoopbackTLSServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.sock.close()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            try:
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"hello\n")
            except (OSError, ssl.SSLError):
                continue

    def can_install_ca(self) -> bool:
        """Whether a private mount namespace can put the test CA in the system store."""
        if os.geteuid() != 0 or not shutil.which("unshare") or not SYSTEM_BUNDLE.is_file():
            return False
        return subprocess.run(["unshare", "--mount", "true"], capture_output=True).returncode == 0


def build_wheel(directory: Path) -> Path:
    """A minimal pure-Python wheel, built by hand so no build backend is needed."""
    directory.mkdir(parents=True, exist_ok=True)
    name, version = "relocpy_probe_wheel", "1.0"
    dist_info = f"{name}-{version}.dist-info"
    files = {
        f"{name}.py": b"VALUE = 7\n",
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: relocpy-probe-wheel\nVersion: {version}\n".encode(),
        f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: relocpy\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = [f"{path},sha256={_urlsafe_digest(data)},{len(data)}" for path, data in files.items()]
    files[f"{dist_info}/RECORD"] = ("\n".join(record + [f"{dist_info}/RECORD,,"]) + "\n").encode()
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return wheel


def _urlsafe_digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
