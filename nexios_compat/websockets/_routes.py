"""``WebsocketRoute``: a Nexios ``{param}`` path and the handler serving it, as a Django URL pattern."""

from __future__ import annotations

import re
import typing

from channels.consumer import AsyncConsumer
from django.urls import path as django_path
from django.urls import register_converter
from django.urls.resolvers import RoutePattern, URLPattern

from ._functions import FunctionConsumer, Handler
from .base import Receive, Scope, Send


class FloatConverter:
    """Nexios's ``{name:float}``: digits with an optional fraction."""

    regex = r"[0-9]+(?:\.[0-9]+)?"

    def to_python(self, value: str) -> float:
        """Convert the matched text."""
        return float(value)

    def to_url(self, value: float) -> str:
        """Format a value for a path."""
        return repr(float(value))


register_converter(FloatConverter, "nexios_float")

_PARAM = re.compile(r"{([A-Za-z_][A-Za-z0-9_]*)(?::([A-Za-z_]+))?}")
_CONVERTERS = {
    None: "str",
    "str": "str",
    "int": "int",
    "path": "path",
    "uuid": "uuid",
    "slug": "slug",
    "float": "nexios_float",
}


def to_django_route(path: str) -> str:
    """Translate ``"/room/{room_id}"`` into Django's ``"room/<str:room_id>"``."""

    def convert(match: re.Match[str]) -> str:
        name, converter = match.group(1), match.group(2)
        if converter not in _CONVERTERS:
            raise ValueError(
                f"Unsupported path converter {converter!r} in {path!r}: "
                f"use {sorted(k for k in _CONVERTERS if k)}"
            )
        return f"<{_CONVERTERS[converter]}:{name}>"

    if not path.startswith("/"):
        raise ValueError(f"Route paths start with '/': {path!r}")
    return _PARAM.sub(convert, path[1:])


class WebsocketRoute:
    """A path (Nexios ``{param}`` syntax) and the function or endpoint class serving it."""

    def __init__(self, path: str, handler: Handler | type[AsyncConsumer], name: str | None = None) -> None:
        self.path = self.raw_path = path
        self.handler = handler
        self.name = name
        self.route = to_django_route(path)
        self.pattern = RoutePattern(self.route, is_endpoint=True)
        # Endpoint classes (WebSocketConsumer and its subclasses) are Channels consumers.
        if isinstance(handler, type) and issubclass(handler, AsyncConsumer):
            self.app = typing.cast(typing.Any, handler).as_asgi()
        elif callable(handler):
            self.app = FunctionConsumer.as_asgi(handler=handler)
        else:
            raise TypeError(
                f"A route needs an async function or a WebSocketEndpoint subclass, not {handler!r}"
            )

    def with_prefix(self, prefix: str) -> WebsocketRoute:
        """Return this route mounted under ``prefix``."""
        return WebsocketRoute(prefix.rstrip("/") + self.path, self.handler, self.name)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one connection with this route's handler."""
        await self.app(scope, receive, send)

    def url_path_for(self, name: str, **path_params: typing.Any) -> str:
        """Return this route's path with ``path_params`` filled in (``name`` must be the route's)."""
        if name != self.name:
            raise ValueError(f"Route name {name!r} does not match this route's name {self.name!r}")
        return _PARAM.sub(lambda m: str(path_params.get(m.group(1), m.group(0))), self.path)

    def as_urlpattern(self) -> URLPattern:
        """Return a Channels-compatible URL pattern for a site's own ``URLRouter``."""
        return typing.cast(URLPattern, django_path(self.route, self.app, name=self.name or ""))

    def __repr__(self) -> str:
        return f"<WebsocketRoute {self.path} -> {getattr(self.handler, '__qualname__', self.handler)}>"


# Nexios's older name for the class.
WebsocketRoutes = WebsocketRoute
