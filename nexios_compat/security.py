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

Non-browser clients send the site's own origin, e.g.
``websockets.connect("wss://example.com/ws/chat/lobby/", origin="https://example.com")``.
Behind a TLS-terminating proxy set ``SECURE_PROXY_SSL_HEADER`` (as Django's
own CSRF check needs), or list the public origin in ``CSRF_TRUSTED_ORIGINS``.
"""

from __future__ import annotations

import logging
import typing
from collections.abc import Awaitable, Callable, Iterable

from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.utils.http import is_same_domain

from .websockets.base import Receive, Scope, Send

__all__ = ["Origin", "SameOriginValidator", "SecureWebSocketStack", "parse_origin"]

logger = logging.getLogger("nexios_compat.security")

ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass an accepted handshake on; answer a refused one with HTTP 403."""
        if scope["type"] != "websocket":
            raise ValueError(f"SameOriginValidator serves WebSocket scopes, not {scope['type']!r}")
        reason = self.refusal(scope)
        if reason is None:
            await self.application(scope, receive, send)
            return
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

    def refusal(self, scope: Scope) -> str | None:
        """Why this handshake is refused, or ``None`` when it is accepted."""
        headers = _headers(scope)
        raw_origin = _one(headers, b"origin")
        if raw_origin is None:
            count = len(headers.get(b"origin", []))
            return "no Origin header" if count == 0 else f"{count} Origin headers"
        origin = parse_origin(raw_origin)
        if origin is None:
            return f"Origin {raw_origin!r} is not a valid http(s) origin"
        host: str | None
        if getattr(settings, "USE_X_FORWARDED_HOST", False) and b"x-forwarded-host" in headers:
            host = _one(headers, b"x-forwarded-host")
        else:
            host = _one(headers, b"host")
        if not host:
            return "no single Host header"
        domain, port = split_domain_port(host)
        if not domain or not validate_host(domain, self.get_allowed_hosts()):
            return f"Host {host!r} is not in ALLOWED_HOSTS"
        scheme = request_scheme(scope, headers)
        own = Origin(scheme, domain, int(port) if port else DEFAULT_PORTS[scheme])
        if origin == own or self.is_trusted(origin, raw_origin):
            return None
        return f"Origin {raw_origin!r} is neither the site's own ({own}) nor in CSRF_TRUSTED_ORIGINS"

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


def SecureWebSocketStack(application: ASGIApp) -> SameOriginValidator:
    """Same-origin check, then Django session auth (``AuthMiddlewareStack``), then ``application``."""
    from channels.auth import AuthMiddlewareStack

    return SameOriginValidator(AuthMiddlewareStack(application))
