"""Origin checking for WebSocket handshakes: Django's CSRF origin rule, applied to sockets.

Browsers send cookies with a WebSocket handshake from any page, and WebSockets
have no CORS: without an origin check, any site a signed-in user visits can
open a socket as that user (cross-site WebSocket hijacking). Channels'
``AllowedHostsOriginValidator`` compares only the origin's *host name* with
``ALLOWED_HOSTS``, so ``https://localhost:9999`` passes for a site served at
``http://localhost:8000``. :class:`SameOriginValidator` accepts a handshake
only when its ``Origin`` is

- the request's own origin: scheme (``ws`` -> ``http``, ``wss`` -> ``https``),
  host and port of the ``Host`` header, whose host is in ``ALLOWED_HOSTS``; or
- listed in ``CSRF_TRUSTED_ORIGINS`` (``https://*.example.com`` wildcards too).

A missing, repeated, malformed or ``null`` origin is refused, and so is any
handshake whose ``Host`` is not in ``ALLOWED_HOSTS``. Refused handshakes get
HTTP 403 and a warning on the ``nexios_compat.security`` logger.

Clients without the session cookie (mobile and desktop apps, pages on other
origins) open sockets with a ticket instead (``?ticket=``, see
``nexios_compat.tickets`` and :class:`TicketAuthMiddleware`): a socket that
carries one is accepted from the origins in ``NEXIOS_COMPAT["ALLOWED_ORIGINS"]``
too, with its cookies removed, so that only the ticket says who it is.

Non-browser clients send the site's own origin, e.g.
``websockets.connect("wss://example.com/ws/chat/lobby/", origin="https://example.com")``.
Behind a TLS-terminating proxy set ``SECURE_PROXY_SSL_HEADER`` (as Django's
own CSRF check needs), or list the public origin in ``CSRF_TRUSTED_ORIGINS``.
"""

from __future__ import annotations

import logging
import typing
from collections.abc import Awaitable, Iterable
from urllib.parse import parse_qsl, urlencode

from channels.db import database_sync_to_async
from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.utils.http import is_same_domain

from .conf import get_config
from .tickets import TicketRefused, redeem_ticket
from .types import WS_4401_UNAUTHORIZED
from .websockets._asgi import ASGIApp, passes_through
from .websockets.base import Receive, Scope, Send

__all__ = ["Origin", "SameOriginValidator", "SecureWebSocketStack", "TicketAuthMiddleware", "parse_origin"]

logger = logging.getLogger("nexios_compat.security")

DEFAULT_PORTS = {"http": 80, "https": 443}
# What a browser puts in Origin is scheme://host[:port]; anything else is not an origin.
_FORBIDDEN_IN_ORIGIN = frozenset("/?#@\\ ")


class Origin(typing.NamedTuple):
    """A serialized origin, normalized: lower-case scheme and host, explicit port."""

    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        default = DEFAULT_PORTS.get(self.scheme)
        return f"{self.scheme}://{self.host}" + ("" if self.port == default else f":{self.port}")


def parse_origin(value: str) -> Origin | None:
    """Parse ``http(s)://host[:port]``; return ``None`` for ``null`` or anything malformed."""
    scheme, sep, rest = value.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in DEFAULT_PORTS or not rest:
        return None
    if not value.isascii() or not value.isprintable() or _FORBIDDEN_IN_ORIGIN.intersection(rest):
        return None
    domain, port = split_domain_port(rest)
    if not domain:
        return None
    return Origin(scheme, domain, int(port) if port else DEFAULT_PORTS[scheme])


def _headers(scope: Scope) -> dict[bytes, list[bytes]]:
    headers: dict[bytes, list[bytes]] = {}
    for name, value in scope.get("headers", []):
        headers.setdefault(bytes(name).lower(), []).append(bytes(value))
    return headers


def _one(headers: dict[bytes, list[bytes]], name: bytes) -> str | None:
    """The header's value if it is sent exactly once, else ``None``."""
    values = headers.get(name, [])
    return values[0].decode("latin-1").strip() if len(values) == 1 else None


def _meta_header(meta_name: str) -> bytes | None:
    """``HTTP_X_FORWARDED_PROTO`` -> ``b"x-forwarded-proto"`` (Django's ``META`` naming)."""
    if not meta_name.startswith("HTTP_"):
        return None
    return meta_name[5:].lower().replace("_", "-").encode("latin-1")


def request_scheme(scope: Scope, headers: dict[bytes, list[bytes]]) -> str:
    """``http`` or ``https``: ``SECURE_PROXY_SSL_HEADER`` if set and sent, else the scope's scheme."""
    proxy_header = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy_header:
        meta_name, secure_value = proxy_header
        name = _meta_header(meta_name)
        values = headers.get(name, []) if name is not None else []
        if values:
            first = values[0].decode("latin-1").split(",", 1)[0].strip()
            return "https" if first == secure_value else "http"
    # ASGI: "scheme" is optional for WebSocket scopes and defaults to "ws" (daphne omits it).
    return "https" if scope.get("scheme", "ws") in {"wss", "https"} else "http"


class SameOriginValidator:
    """ASGI middleware: refuse WebSocket handshakes not from the site's own or a trusted origin."""

    def __init__(
        self,
        application: ASGIApp,
        *,
        allowed_hosts: Iterable[str] | None = None,
        trusted_origins: Iterable[str] | None = None,
    ) -> None:
        """``allowed_hosts`` and ``trusted_origins`` default to the settings, read per handshake."""
        self.application = application
        self.allowed_hosts = list(allowed_hosts) if allowed_hosts is not None else None
        self.trusted_origins = list(trusted_origins) if trusted_origins is not None else None

    @passes_through
    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """Pass an accepted handshake on; answer a refused one with HTTP 403."""
        if scope["type"] != "websocket":
            raise ValueError(f"SameOriginValidator serves WebSocket scopes, not {scope['type']!r}")
        reason, cross_origin = self._judge(scope)
        if reason is None:
            if cross_origin:
                # A listed origin's page may hold the user's cookie: only its ticket may speak.
                scope = {
                    **scope,
                    "headers": [(n, v) for n, v in scope.get("headers", []) if bytes(n).lower() != b"cookie"],
                }
            return self.application(scope, receive, send)
        return self._refuse(scope, receive, send, reason)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, reason: str) -> None:
        logger.warning("Refused WebSocket handshake for %s: %s", scope.get("path", ""), reason)
        message = await receive()
        if message["type"] == "websocket.connect":
            # Closing before accepting refuses the handshake: the server answers 403.
            await send({"type": "websocket.close", "code": 1008})

    def get_allowed_hosts(self) -> list[str]:
        """``ALLOWED_HOSTS`` (Django's local defaults when it is empty and ``DEBUG`` is on)."""
        if self.allowed_hosts is not None:
            return self.allowed_hosts
        hosts = list(settings.ALLOWED_HOSTS)
        if settings.DEBUG and not hosts:
            hosts = [".localhost", "127.0.0.1", "[::1]"]
        return hosts

    def get_trusted_origins(self) -> list[str]:
        """``CSRF_TRUSTED_ORIGINS`` unless given to the constructor."""
        if self.trusted_origins is not None:
            return self.trusted_origins
        return list(getattr(settings, "CSRF_TRUSTED_ORIGINS", []))

    def get_ticket_origins(self) -> list[Origin]:
        """``NEXIOS_COMPAT["ALLOWED_ORIGINS"]``: other origins accepted for sockets with a ticket."""
        origins = (parse_origin(entry) for entry in get_config()["ALLOWED_ORIGINS"])
        return [origin for origin in origins if origin is not None]

    def refusal(self, scope: Scope) -> str | None:
        """Why this handshake is refused, or ``None`` when it is accepted."""
        return self._judge(scope)[0]

    def _judge(self, scope: Scope) -> tuple[str | None, bool]:
        """(why it is refused or None, whether it was accepted only as a ticketed cross-origin socket)."""
        reason, foreign = self._same_origin_refusal(scope)
        if foreign is None or ticket_param(scope) is None:
            return reason, False
        if foreign in self.get_ticket_origins():
            return None, True
        return f"{reason} nor (with a ticket) in ALLOWED_ORIGINS", False

    def _same_origin_refusal(self, scope: Scope) -> tuple[str | None, Origin | None]:
        """(why it is refused or None, the origin when that is the only thing refused)."""
        headers = _headers(scope)
        raw_origin = _one(headers, b"origin")
        if raw_origin is None:
            count = len(headers.get(b"origin", []))
            return ("no Origin header" if count == 0 else f"{count} Origin headers"), None
        origin = parse_origin(raw_origin)
        if origin is None:
            return f"Origin {raw_origin!r} is not a valid http(s) origin", None
        host: str | None
        if getattr(settings, "USE_X_FORWARDED_HOST", False) and b"x-forwarded-host" in headers:
            host = _one(headers, b"x-forwarded-host")
        else:
            host = _one(headers, b"host")
        if not host:
            return "no single Host header", None
        domain, port = split_domain_port(host)
        if not domain or not validate_host(domain, self.get_allowed_hosts()):
            return f"Host {host!r} is not in ALLOWED_HOSTS", None
        scheme = request_scheme(scope, headers)
        own = Origin(scheme, domain, int(port) if port else DEFAULT_PORTS[scheme])
        if origin == own or self.is_trusted(origin, raw_origin):
            return None, None
        return f"Origin {raw_origin!r} is neither the site's own ({own}) nor in CSRF_TRUSTED_ORIGINS", origin

    def is_trusted(self, origin: Origin, raw_origin: str) -> bool:
        """Whether the origin is listed in the trusted origins (Django's wildcard rules)."""
        netloc = raw_origin.partition("://")[2].lower()
        for entry in self.get_trusted_origins():
            scheme, _, entry_netloc = entry.lower().partition("://")
            if "*" in entry_netloc:
                if scheme == origin.scheme and is_same_domain(netloc, entry_netloc.lstrip("*")):
                    return True
            elif parse_origin(entry) == origin:
                return True
        return False


def ticket_param(scope: Scope) -> str | None:
    """The socket's ``?ticket=`` (``""`` when it is sent twice or empty), or ``None`` without one."""
    values = [
        v
        for k, v in parse_qsl(bytes(scope.get("query_string", b"")).decode("latin-1"), keep_blank_values=True)
        if k == "ticket"
    ]
    if not values:
        return None
    return values[0] if len(values) == 1 else ""


class TicketAuthMiddleware:
    """ASGI middleware: a socket with ``?ticket=`` is its ticket's user, or is closed with 4401."""

    def __init__(self, application: ASGIApp) -> None:
        """Wrap ``application``; sockets without a ticket pass through unchanged."""
        self.application = application

    @passes_through
    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """Redeem the ticket, then serve the socket as its user (limited to its rooms, if any)."""
        ticket = ticket_param(scope) if scope["type"] == "websocket" else None
        if ticket is None:
            return self.application(scope, receive, send)
        return self._redeem(scope, receive, send, ticket)

    async def _redeem(self, scope: Scope, receive: Receive, send: Send, ticket: str) -> None:
        try:
            redeemed = await database_sync_to_async(redeem_ticket)(ticket)
        except TicketRefused as refused:
            logger.warning("Refused WebSocket ticket for %s: %s", scope.get("path", ""), refused.reason)
            message = await receive()
            if message["type"] == "websocket.connect":
                # Accept, then close: a refused handshake would reach the client as a bare 403,
                # and a client must tell "log in again" (4401) from "not allowed" (403/4403).
                await send({"type": "websocket.accept"})
                await send({"type": "websocket.close", "code": WS_4401_UNAUTHORIZED})
            return
        # The handler never sees the ticket: it stays out of anything that logs the query string.
        query = [
            (k, v)
            for k, v in parse_qsl(
                bytes(scope.get("query_string", b"")).decode("latin-1"), keep_blank_values=True
            )
            if k != "ticket"
        ]
        scope = {
            **scope,
            "user": redeemed.user,
            "nexios_ticket_rooms": redeemed.rooms,
            "query_string": urlencode(query).encode("latin-1"),
        }
        await self.application(scope, receive, send)


def SecureWebSocketStack(application: ASGIApp) -> SameOriginValidator:
    """Origin check, Django session auth (``AuthMiddlewareStack``), tickets, then ``application``."""
    from channels.auth import AuthMiddlewareStack

    return SameOriginValidator(AuthMiddlewareStack(TicketAuthMiddleware(application)))
