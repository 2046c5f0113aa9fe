"""``deploy/nginx.conf`` in front of two daphne processes: TLS, WebSocket upgrade, no sticky sessions."""

from __future__ import annotations

import datetime
import re
import shutil
import ssl
import subprocess
import typing
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.typing import Origin

from devservers import REPO_ROOT, DaphneServer, free_port, wait_for_port
from tests.support.cluster import Control, Member, cluster_env, migrate, start_cluster
from tests.support.fixtures import require_service

pytestmark = pytest.mark.timeout(120)


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


def site_config(daphnes: list[DaphneServer], https_port: int, cert: Path, key: Path) -> str:
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


async def test_the_sample_nginx_config_spreads_sockets_over_processes(
    redis_url: str, postgres_url: str, daphne_factory: typing.Any, tmp_path: Path
) -> None:
    nginx = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)
    require_service("nginx", nginx is not None)
    assert nginx is not None
    env = {**cluster_env(redis_url, postgres_url), "BEHIND_TLS_PROXY": "1"}
    migrate(env)
    daphnes = start_cluster(daphne_factory, env, 2)
    port = free_port()
    cert, key = self_signed(tmp_path)
    site = tmp_path / "site.conf"
    site.write_text(site_config(daphnes, port, cert, key))
    (tmp_path / "nginx.conf").write_text(main_config(tmp_path, site))
    proxy = subprocess.Popen(
        [nginx, "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-c", str(tmp_path / "nginx.conf"),
         "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_for_port("127.0.0.1", port, 15, proxy, log_path=tmp_path / "error.log")
        tls = ssl.create_default_context(cafile=str(cert))
        tls.check_hostname = False
        origin = f"https://127.0.0.1:{port}"

        async def member(name: str) -> Member:
            ws = await connect(
                f"wss://127.0.0.1:{port}/mp/member/lobby", ssl=tls, origin=Origin(origin), open_timeout=10
            )
            joined = Member(ws, name)
            await joined.wait(lambda frames: len(frames) >= 1, "its channel id")
            return joined

        members = [await member(f"m{i}") for i in range(4)]
        processes = {m.frames[0]["process"] for m in members}
        assert len(processes) == 2, "least_conn should have used both processes"

        control = Control(await connect(f"wss://127.0.0.1:{port}/mp/control", ssl=tls, origin=Origin(origin)))
        assert await control("group_send", room="lobby", payload={"through": "nginx"}) == "GROUP_SEND"
        for m in members:
            await m.wait(lambda frames: {"through": "nginx"} in frames, "a broadcast through the proxy")

        # One process dies: new connections go to the other (process ids carry the pid).
        killed = f"-{daphnes[0].pid}-"
        daphnes[0].kill()
        for i in range(2):
            late = await member(f"late{i}")
            assert killed not in late.frames[0]["process"]
    finally:
        proxy.terminate()
        proxy.wait(10)
