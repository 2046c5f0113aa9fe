"""``deploy/nginx.conf`` fails closed: no public /metrics, /health for the balancer, no spoofed address."""

from __future__ import annotations

import http.server
import json
import ssl
import threading
import typing
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.nginx import Nginx


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
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    proxy = Nginx(tmp_path, [_Upstream(upstream.server_address[1])]).start()  # type: ignore[list-item]
    try:
        port, tls = proxy.port, proxy.tls
        yield port, tls
    finally:
        proxy.stop()
        upstream.shutdown()


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
