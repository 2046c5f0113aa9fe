"""``deploy/nginx.conf`` fails closed: no public /metrics, /health for the balancer, no spoofed address."""

from __future__ import annotations

import http.server
import json
import shutil
import ssl
import subprocess
import threading
import typing
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from devservers import free_port, wait_for_port
from tests.cluster.test_multiprocess_proxy import main_config, self_signed, site_config
from tests.support.fixtures import require_service


class _Echo(http.server.BaseHTTPRequestHandler):
    """Answer every GET with the path and the headers the upstream received."""

    def do_GET(self) -> None:
        body = json.dumps({"path": self.path, "headers": dict(self.headers.items())}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: typing.Any) -> None:
        pass


class _Upstream:
    def __init__(self, port: int) -> None:
        self.port = port


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[tuple[int, ssl.SSLContext]]:
    """The sample config in a real nginx, in front of an upstream that echoes the request."""
    nginx = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)
    require_service("nginx", nginx is not None)
    assert nginx is not None
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    port = free_port()
    cert, key = self_signed(tmp_path)
    site = tmp_path / "site.conf"
    site.write_text(site_config([_Upstream(upstream.server_address[1])], port, cert, key))  # type: ignore[list-item]
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
        yield port, tls
    finally:
        proxy.terminate()
        proxy.wait(10)
        upstream.shutdown()
        upstream.server_close()


def get(proxied: tuple[int, ssl.SSLContext], path: str, **headers: str) -> tuple[int, typing.Any]:
    port, tls = proxied
    request = urllib.request.Request(f"https://127.0.0.1:{port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10, context=tls) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, None


def test_a_spoofed_forwarded_for_is_replaced_by_the_real_address(proxied: tuple[int, ssl.SSLContext]) -> None:
    status, seen = get(proxied, "/chat/", **{"X-Forwarded-For": "10.9.9.9"})
    assert status == 200
    assert seen["headers"]["X-Forwarded-For"] == "127.0.0.1"


def test_metrics_are_denied_and_health_reaches_the_upstream_from_the_balancer(
    proxied: tuple[int, ssl.SSLContext],
) -> None:
    assert get(proxied, "/metrics")[0] == 403
    assert get(proxied, "/metrics", Authorization="Bearer x")[0] == 403
    for path in ("/health", "/health/live", "/health/ready"):
        status, seen = get(proxied, path, **{"X-Forwarded-For": "10.9.9.9"})
        assert status == 200 and seen["path"] == path  # 127.0.0.1 is the sample's balancer
        assert seen["headers"]["X-Forwarded-For"] == "127.0.0.1"
