"""The WebSocket origin check (``nexios_compat.security``), in process and against daphne.

In process, handshakes with chosen headers go through ``WebsocketCommunicator``;
end to end, real handshakes (the ``websockets`` client and a raw socket for
headers it will not send) go to daphne serving the project's application.
"""

from __future__ import annotations

import typing
from collections.abc import Iterator

import pytest
from channels.security.websocket import AllowedHostsOriginValidator
from channels.testing import WebsocketCommunicator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from devservers import DaphneServer
from nexios_compat.security import Origin, SameOriginValidator, SecureWebSocketStack, parse_origin
from nexios_compat.websockets.base import Receive, Scope, Send
from tests.support.rawsocket import HandshakeRefused, RawSocket
from tests.support.site import migrated_database, start_server

HOST = "127.0.0.1:8000"
TIMEOUT = 5.0


async def accept_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Accept, report the scope's user (if any) and close."""
    await receive()
    await send({"type": "websocket.accept"})
    user = scope.get("user")
    await send({"type": "websocket.send", "text": repr(user)})
    await send({"type": "websocket.close", "code": 1000})


def with_scope(app: typing.Any, **extra: typing.Any) -> typing.Any:
    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        await app({**scope, **extra}, receive, send)

    return wrapped


async def handshake(
    origin: str | list[str] | None,
    host: str | list[str] | None = HOST,
    *,
    app: typing.Any = None,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
    **scope: typing.Any,
) -> bool:
    """Whether a handshake with these headers is accepted."""
    headers: list[tuple[bytes, bytes]] = []
    for value in [host] if isinstance(host, str) else host or []:
        headers.append((b"host", value.encode("latin-1")))
    for value in [origin] if isinstance(origin, str) else origin or []:
        headers.append((b"origin", value.encode("latin-1")))
    headers += extra_headers or []
    application = with_scope(app or SameOriginValidator(accept_app), **scope)
    communicator = WebsocketCommunicator(application, "/ws/chat/lobby/", headers=headers)
    connected, code = await communicator.connect(timeout=TIMEOUT)
    if connected:
        await communicator.receive_output(timeout=TIMEOUT)
        await communicator.disconnect()
    else:
        assert code == 1008
    return connected


@pytest.fixture(autouse=True)
def site_settings(settings: typing.Any) -> None:
    settings.DEBUG = False
    settings.ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]", "example.com"]
    settings.CSRF_TRUSTED_ORIGINS = []
    settings.SECURE_PROXY_SSL_HEADER = None
    settings.USE_X_FORWARDED_HOST = False


# In process --------------------------------------------------------------------


async def test_own_origin_is_accepted() -> None:
    assert await handshake("http://127.0.0.1:8000")


@pytest.mark.parametrize(
    "origin",
    [
        "http://evil.example",
        "http://evil.example:8000",
        "null",
        "https://127.0.0.1:8000",  # scheme
        "http://127.0.0.1:8001",  # port
        "http://127.0.0.1",  # port (80)
        "http://localhost:8000",  # another allowed host is another origin
        "http://127.0.0.1.evil.example:8000",
        "http://127.0.0.1:8000/",  # not a serialized origin
        "http://127.0.0.1:8000/path",
        "http://user@127.0.0.1:8000",
        "http://127.0.0.1:8000?",
        "http://127.0.0.1:8000#",
        "http://127.0.0.1 :8000",
        "http://127.0.0.1:8000\x00",
        "ws://127.0.0.1:8000",  # browsers send http(s) origins
        "file://",
        "127.0.0.1:8000",
        "//127.0.0.1:8000",
        "http://",
        "http://:8000",
        "http://127.0.0.1:80x",
        "",
    ],
)
async def test_other_origins_are_refused(origin: str) -> None:
    assert not await handshake(origin)


async def test_missing_origin_is_refused() -> None:
    assert not await handshake(None)


async def test_repeated_origin_is_refused() -> None:
    assert not await handshake(["http://127.0.0.1:8000", "http://127.0.0.1:8000"])
    assert not await handshake(["http://evil.example", "http://127.0.0.1:8000"])


async def test_channels_host_only_check_lets_other_ports_and_schemes_through() -> None:
    """Why this module exists: AllowedHostsOriginValidator compares host names only."""
    for origin in ("https://localhost:9999", "http://127.0.0.1:1"):
        assert await handshake(origin, "localhost:8000", app=AllowedHostsOriginValidator(accept_app))
        assert not await handshake(origin, "localhost:8000")


async def test_host_must_be_allowed() -> None:
    # DNS rebinding: evil.example resolves to the server; Origin and Host agree.
    assert not await handshake("http://evil.example:8000", "evil.example:8000")
    assert not await handshake("http://127.0.0.1:8000", None)
    assert not await handshake("http://127.0.0.1:8000", ["127.0.0.1:8000", "127.0.0.1:8000"])
    assert not await handshake("http://127.0.0.1:8000", "127.0.0.1:8000, evil.example")


async def test_default_ports_and_case_are_normalized() -> None:
    assert await handshake("http://example.com", "example.com")
    assert await handshake("http://example.com:80", "example.com")
    assert await handshake("http://example.com", "example.com:80")
    assert await handshake("HTTP://Example.COM", "EXAMPLE.com")
    assert not await handshake("https://example.com", "example.com")
    assert not await handshake("http://example.com:443", "example.com")


async def test_ipv6_host() -> None:
    assert await handshake("http://[::1]:8000", "[::1]:8000")
    assert not await handshake("http://[::2]:8000", "[::1]:8000")


async def test_secure_scope_expects_https_origin() -> None:
    assert await handshake("https://example.com", "example.com", scheme="wss")
    assert not await handshake("http://example.com", "example.com", scheme="wss")
    assert not await handshake("https://example.com", "example.com", scheme="ws")
    assert await handshake("https://example.com:8443", "example.com:8443", scheme="wss")


async def test_secure_proxy_ssl_header(settings: typing.Any) -> None:
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    proto = [(b"x-forwarded-proto", b"https")]
    assert await handshake("https://example.com", "example.com", extra_headers=proto)
    assert not await handshake("http://example.com", "example.com", extra_headers=proto)
    plain = [(b"x-forwarded-proto", b"http")]
    assert await handshake("http://example.com", "example.com", extra_headers=plain)
    assert not await handshake("https://example.com", "example.com", extra_headers=plain)
    # Without the header the scope's scheme counts.
    assert await handshake("http://example.com", "example.com")


async def test_forwarded_host_only_when_enabled(settings: typing.Any) -> None:
    forwarded = [(b"x-forwarded-host", b"example.com")]
    assert not await handshake("http://example.com", "127.0.0.1:8000", extra_headers=forwarded)
    settings.USE_X_FORWARDED_HOST = True
    assert await handshake("http://example.com", "127.0.0.1:8000", extra_headers=forwarded)
    assert not await handshake("http://127.0.0.1:8000", "127.0.0.1:8000", extra_headers=forwarded)


async def test_csrf_trusted_origins(settings: typing.Any) -> None:
    settings.CSRF_TRUSTED_ORIGINS = [
        "https://app.example.net",
        "https://*.example.org",
        "http://dev.test:3000",
    ]
    assert await handshake("https://app.example.net")
    assert await handshake("https://app.example.net:443")
    assert await handshake("https://a.example.org")
    assert await handshake("https://b.a.example.org")
    assert await handshake("http://dev.test:3000")
    assert not await handshake("http://app.example.net")  # scheme
    assert not await handshake("https://app.example.net:8443")  # port
    assert not await handshake("http://a.example.org")
    assert not await handshake("https://example.org.evil.example")
    assert not await handshake("https://evilexample.org")
    assert not await handshake("http://dev.test")
    assert not await handshake("null")
    # A trusted origin does not make an unknown Host acceptable.
    assert not await handshake("https://app.example.net", "evil.example")


async def test_debug_with_empty_allowed_hosts_uses_django_local_defaults(settings: typing.Any) -> None:
    settings.DEBUG = True
    settings.ALLOWED_HOSTS = []
    assert await handshake("http://localhost:8000", "localhost:8000")
    assert await handshake("http://sub.localhost:8000", "sub.localhost:8000")
    assert await handshake("http://127.0.0.1:8000", "127.0.0.1:8000")
    assert not await handshake("http://example.com", "example.com")


async def test_constructor_arguments_override_settings() -> None:
    validator = SameOriginValidator(
        accept_app, allowed_hosts=["internal.test"], trusted_origins=["https://front.test"]
    )
    assert await handshake("http://internal.test", "internal.test", app=validator)
    assert await handshake("https://front.test", "internal.test", app=validator)
    assert not await handshake("http://127.0.0.1:8000", app=validator)


async def test_refuses_non_websocket_scopes() -> None:
    validator = SameOriginValidator(accept_app)
    with pytest.raises(ValueError, match="WebSocket"):
        await validator({"type": "http"}, typing.cast(Receive, None), typing.cast(Send, None))


async def test_secure_stack_checks_origin_then_authenticates() -> None:
    stack = SecureWebSocketStack(accept_app)
    assert not await handshake("http://evil.example", app=stack)
    communicator = WebsocketCommunicator(
        stack, "/ws/chat/lobby/", headers=[(b"host", HOST.encode()), (b"origin", b"http://127.0.0.1:8000")]
    )
    connected, _ = await communicator.connect(timeout=TIMEOUT)
    assert connected
    # AuthMiddlewareStack ran: the scope has a (lazy) user.
    assert "UserLazyObject" in await communicator.receive_from(timeout=TIMEOUT)
    await communicator.disconnect()


def test_parse_origin() -> None:
    assert parse_origin("http://example.com") == Origin("http", "example.com", 80)
    assert parse_origin("https://EXAMPLE.com:8443") == Origin("https", "example.com", 8443)
    assert parse_origin("http://[::1]:8000") == Origin("http", "[::1]", 8000)
    assert str(Origin("https", "example.com", 443)) == "https://example.com"
    assert str(Origin("http", "example.com", 8000)) == "http://example.com:8000"
    for bad in ("null", "", "example.com", "ftp://example.com", "http://ex ample.com", "http://é.com"):
        assert parse_origin(bad) is None


hosts = st.sampled_from(["127.0.0.1", "localhost", "example.com", "evil.example", "[::1]", "EXAMPLE.com"])
ports = st.one_of(st.none(), st.sampled_from([80, 443, 8000, 8001]))
schemes = st.sampled_from(["http", "https", "ws", "HTTP"])


def render(scheme: str, host: str, port: int | None) -> str:
    return f"{scheme}://{host}" + ("" if port is None else f":{port}")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    origin=st.one_of(st.builds(render, schemes, hosts, ports), st.text(max_size=40)),
    host_name=hosts,
    host_port=ports,
    secure=st.booleans(),
)
def test_accepted_only_when_origin_equals_the_request_origin(
    origin: str, host_name: str, host_port: int | None, secure: bool
) -> None:
    """Property: accepted exactly when the origin is the request's own and the host is allowed."""
    host = host_name + ("" if host_port is None else f":{host_port}")
    scope = {
        "type": "websocket",
        "scheme": "wss" if secure else "ws",
        "headers": [(b"host", host.encode()), (b"origin", origin.encode("utf-8"))],
    }
    accepted = SameOriginValidator(accept_app).refusal(scope) is None
    own = Origin("https" if secure else "http", host_name.lower(), host_port or (443 if secure else 80))
    allowed = host_name.lower() in {"127.0.0.1", "localhost", "example.com", "[::1]"}
    assert accepted == (allowed and parse_origin(origin) == own), (origin, host, secure)


# Against daphne --------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaphneServer]:
    daphne = start_server(migrated_database(tmp_path_factory.mktemp("sec-origin")))
    try:
        yield daphne
    finally:
        daphne.stop()
        print(f"----- daphne port {daphne.port} log -----\n{daphne.log()}")
        daphne.close()


async def refused_status(server: DaphneServer, origin: str | None, path: str = "/ws/chat/origin/") -> int:
    """Connect with ``origin``; return 101 when accepted, else the HTTP status of the refusal."""
    try:
        async with connect(server.ws_url(path), origin=origin, open_timeout=TIMEOUT) as ws:  # type: ignore[arg-type]
            await ws.recv()
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


async def test_daphne_accepts_own_origin(server: DaphneServer) -> None:
    assert await refused_status(server, server.url) == 101
    assert await refused_status(server, f"http://localhost:{server.port}", "/seeds/ws") == 403
    assert await refused_status(server, "https://trusted.example") == 101
    assert await refused_status(server, "https://a.trusted-wildcard.example") == 101


@pytest.mark.parametrize(
    "origin",
    [
        "http://evil.example",
        None,
        "null",
        "https://127.0.0.1:{port}",
        "http://127.0.0.1:{other}",
        "https://localhost:9999",
    ],
    ids=["evil", "missing", "null", "scheme", "port", "host-only-match"],
)
async def test_daphne_refuses_with_403(server: DaphneServer, origin: str | None) -> None:
    if origin is not None:
        origin = origin.format(port=server.port, other=server.port + 1)
    assert await refused_status(server, origin) == 403
    assert await refused_status(server, origin, "/seeds/ws") == 403


def test_daphne_host_header_checks(server: DaphneServer) -> None:
    # Another allowed host name, consistently in Host and Origin: accepted.
    ws = RawSocket.open(
        server.port, "/seeds/ws", origin=f"http://localhost:{server.port}", host=f"localhost:{server.port}"
    )
    ws.send_text("hi")
    assert ws.read_message().text == "You said: hi"
    assert ws.close().close_code == 1000
    # DNS rebinding: a host that is not in ALLOWED_HOSTS, however consistent.
    rebinding = f"evil.example:{server.port}"
    with pytest.raises(HandshakeRefused) as refused:
        RawSocket.open(server.port, "/seeds/ws", origin=f"http://{rebinding}", host=rebinding)
    assert refused.value.status == 403
    # Two Origin headers, one of them right.
    with pytest.raises(HandshakeRefused):
        RawSocket.open(
            server.port, "/seeds/ws", origin=server.url, extra_headers=(("Origin", "http://evil.example"),)
        )


def test_refusals_are_logged(server: DaphneServer) -> None:
    with pytest.raises(HandshakeRefused):
        RawSocket.open(server.port, "/seeds/ws", origin="http://logged.evil.example")
    assert "Refused WebSocket handshake for /seeds/ws: Origin 'http://logged.evil.example'" in server.log()
