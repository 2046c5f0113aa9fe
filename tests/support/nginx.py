"""nginx in front of daphne processes, configured from ``deploy/nginx.conf`` (TLS, upgrade headers, XFF).

``Nginx(directory, daphnes).start()`` writes the sample with the daphnes' ports as its
upstreams, a self-signed certificate and its own listening port, and runs Debian's nginx
in the foreground; ``.url``, ``.ws_url(path)`` and ``.connect`` (the ``ssl`` context and
Origin for ``websockets``) let clients reach the daphnes only through it.
"""

from __future__ import annotations

import datetime
import re
import shutil
import ssl
import subprocess
import typing
from collections.abc import Sequence
from pathlib import Path

from websockets.typing import Origin

from devservers import REPO_ROOT, DaphneServer, free_port, wait_for_port
from tests.support.fixtures import require_service


def self_signed(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def site_config(daphnes: Sequence[DaphneServer], https_port: int, cert: Path, key: Path) -> str:
    """The sample, with this test's upstream ports, listening ports, certificate and name."""
    text = (REPO_ROOT / "deploy" / "nginx.conf").read_text()
    upstreams = "".join(f"    server 127.0.0.1:{d.port} max_fails=1 fail_timeout=10s;\n" for d in daphnes)
    text, found = re.subn(r"(    server 127\.0\.0\.1:\d+ [^\n]*\n)+", upstreams, text)
    assert found == 1, "the sample's upstream block changed shape"
    for old, new in {
        "listen 80;": f"listen 127.0.0.1:{free_port()};",
        "listen 443 ssl;": f"listen 127.0.0.1:{https_port} ssl;",
        "/etc/ssl/certs/chat.example.com.pem": str(cert),
        "/etc/ssl/private/chat.example.com.key": str(key),
        "chat.example.com": "127.0.0.1",
    }.items():
        assert old in text, old
        text = text.replace(old, new)
    return text


def main_config(directory: Path, site: Path) -> str:
    temp = "".join(
        f"    {kind}_temp_path {directory / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"pid {directory / 'nginx.pid'};\nerror_log {directory / 'error.log'};\nevents {{}}\n"
        f"http {{\n    access_log off;\n{temp}    include {site};\n}}\n"
    )


def nginx_binary() -> str:
    """Debian's nginx (``/usr/sbin`` is not on every PATH); skips, or fails under CI, without it."""
    nginx = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)
    require_service("nginx", nginx is not None)
    assert nginx is not None
    return nginx


class Nginx:
    """Debian's nginx running ``deploy/nginx.conf`` in front of ``daphnes``, from ``directory``."""

    def __init__(self, directory: Path, daphnes: Sequence[DaphneServer]) -> None:
        self.binary = nginx_binary()
        self.directory = directory
        self.port = free_port()
        self.cert, key = self_signed(directory)
        site = directory / "site.conf"
        site.write_text(site_config(daphnes, self.port, self.cert, key))
        (directory / "nginx.conf").write_text(main_config(directory, site))
        self.tls = ssl.create_default_context(cafile=str(self.cert))
        self.tls.check_hostname = False
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def ws_url(self, path: str = "/") -> str:
        return f"wss://127.0.0.1:{self.port}/{path.lstrip('/')}"

    @property
    def connect(self) -> dict[str, typing.Any]:
        """Keyword arguments of ``websockets`` ``connect`` for this proxy."""
        return {"ssl": self.tls, "origin": Origin(self.url)}

    def start(self) -> Nginx:
        log = self.directory / "error.log"
        self.proc = subprocess.Popen(
            [self.binary, "-p", str(self.directory), "-e", str(log), "-c", str(self.directory / "nginx.conf"),
             "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_for_port("127.0.0.1", self.port, 15, self.proc, log_path=log)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def log(self) -> str:
        path = self.directory / "error.log"
        return path.read_text() if path.exists() else ""
