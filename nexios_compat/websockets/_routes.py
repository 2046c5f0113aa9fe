"""``WebsocketRoute``: a Nexios ``{param}`` path and the handler serving it, as a Django URL pattern."""

from __future__ import annotations

import functools
import re
import typing

from channels.consumer import AsyncConsumer
from django.urls import path as django_path
from django.urls import register_converter
from django.urls.resolvers import RoutePattern, URLPattern

from ._asgi import ASGIApp, passes_through
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


def consumer_app(consumer_class: type[AsyncConsumer], **initkwargs: typing.Any) -> ASGIApp:
    """Channels' ``consumer_class.as_asgi(**initkwargs)``, without a frame of its own per socket.

    Channels' ``as_asgi`` awaits the consumer inside a coroutine of its own, which
    every open socket keeps; this returns the consumer's coroutine instead.
    """

    @passes_through
    def app(scope: Scope, receive: Receive, send: Send) -> typing.Awaitable[None]:
        return typing.cast(ASGIApp, consumer_class(**initkwargs))(scope, receive, send)

    # What Channels' as_asgi sets, for code that looks the consumer up through the route.
    app.consumer_class = consumer_class  # type: ignore[attr-defined]
    app.consumer_initkwargs = initkwargs  # type: ignore[attr-defined]
    functools.update_wrapper(app, consumer_class, updated=())
    return app


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
            self.app = consumer_app(handler)
        elif callable(handler):
            self.app = consumer_app(FunctionConsumer, handler=handler)
        else:
            raise TypeError(
                f"A route needs an async function or a WebSocketEndpoint subclass, not {handler!r}"
            )

    def with_prefix(self, prefix: str) -> WebsocketRoute:
        """Return this route mounted under ``prefix``."""
        return WebsocketRoute(prefix.rstrip("/") + self.path, self.handler, self.name)

    @passes_through
    def handle(self, scope: Scope, receive: Receive, send: Send) -> typing.Awaitable[None]:
        """Serve one connection with this route's handler."""
        return self.app(scope, receive, send)

    def url_path_for(self, name: str, **path_params: typing.Any) -> str:
        """Return this route's path with ``path_params`` filled in (``name`` must be the route's)."""
        if name != self.name:
            raise ValueError(f"Route name {name!r} does not match this route's name {self.name!r}")
        return _PARAM.sub(lambda m: str(path_params.get(m.group(1), m.group(0))), self.path)

    def as_urlpattern(self) -> URLPattern:
        """Return a Channels-compatible URL pattern for a site's own ``URLRouter``."""
        view: typing.Any = self.app  # an ASGI application, not a Django view
        return typing.cast(URLPattern, django_path(self.route, view, name=self.name or ""))

    def __repr__(self) -> str:
        return f"<WebsocketRoute {self.path} -> {getattr(self.handler, '__qualname__', self.handler)}>"


# Nexios's older name for the class.
WebsocketRoutes = WebsocketRoute
