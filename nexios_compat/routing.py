"""``WSRouter`` and ``get_application()``: Nexios-style routes served as Channels consumers."""

from __future__ import annotations

import re
import typing
from collections.abc import Callable

from channels.routing import URLRouter
from django.urls import path as django_path
from django.urls.resolvers import RoutePattern, URLPattern

from .websockets.base import Receive, Scope, Send
from .websockets.consumers import FunctionConsumer, Handler, WebSocketConsumer

__all__ = ["NexiosCompatApplication", "WSRouter", "WebsocketRoute", "get_application"]

_PARAM = re.compile(r"{([A-Za-z_][A-Za-z0-9_]*)(?::([A-Za-z_]+))?}")
_CONVERTERS = {
    None: "str",
    "str": "str",
    "int": "int",
    "path": "path",
    "uuid": "uuid",
    "slug": "slug",
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

    def __init__(
        self, path: str, handler: Handler | type[WebSocketConsumer], name: str | None = None
    ) -> None:
        self.path = path
        self.handler = handler
        self.name = name
        self.route = to_django_route(path)
        self.pattern = RoutePattern(self.route, is_endpoint=True)
        if isinstance(handler, type) and issubclass(handler, WebSocketConsumer):
            self.app = handler.as_asgi()
        elif callable(handler):
            self.app = FunctionConsumer.as_asgi(handler=handler)
        else:
            raise TypeError(
                f"A route needs an async function or a WebSocketEndpoint subclass, not {handler!r}"
            )

    def with_prefix(self, prefix: str) -> WebsocketRoute:
        """Return this route mounted under ``prefix``."""
        return WebsocketRoute(prefix.rstrip("/") + self.path, self.handler, self.name)

    def as_urlpattern(self) -> URLPattern:
        """Return a Channels-compatible URL pattern for a site's own ``URLRouter``."""
        return typing.cast(URLPattern, django_path(self.route, self.app, name=self.name or ""))

    def __repr__(self) -> str:
        return f"<WebsocketRoute {self.path} -> {getattr(self.handler, '__qualname__', self.handler)}>"


class _RouteCollection:
    """Routes added with ``ws_route``/``add_ws_route`` (shared by router and app)."""

    prefix = ""

    def __init__(self) -> None:
        self.routes: list[WebsocketRoute] = []

    def add_ws_route(
        self, route: WebsocketRoute | str, handler: Handler | type[WebSocketConsumer] | None = None
    ) -> WebsocketRoute:
        """Add a ``WebsocketRoute`` (or a path and a handler)."""
        if isinstance(route, str):
            if handler is None:
                raise TypeError("add_ws_route(path, handler) needs a handler")
            route = WebsocketRoute(route, handler)
        if self.prefix:
            route = route.with_prefix(self.prefix)
        self.routes.append(route)
        return route

    def ws_route(self, path: str) -> Callable[[Handler], Handler]:
        """Decorator: serve ``path`` with the decorated function or endpoint class."""

        def decorator(handler: Handler) -> Handler:
            self.add_ws_route(path, handler)
            return handler

        return decorator

    def get_routes(self) -> list[WebsocketRoute]:
        """Return every route, in the order added."""
        return list(self.routes)


class WSRouter(_RouteCollection):
    """A group of WebSocket routes, optionally under a path prefix."""

    def __init__(self, prefix: str = "") -> None:
        super().__init__()
        if prefix and not prefix.startswith("/"):
            raise ValueError(f"Router prefixes start with '/': {prefix!r}")
        self.prefix = prefix.rstrip("/")


class NexiosCompatApplication(_RouteCollection):
    """An ASGI application for WebSocket scopes, with Nexios's route-registration API.

    Routes are resolved when a connection arrives, so they may be added after the
    application (or a router) is mounted. ``urlpatterns`` exposes the same routes
    to a site's own Channels ``URLRouter``.
    """

    def __init__(self, **options: typing.Any) -> None:
        super().__init__()
        self.options = options
        self.routers: list[tuple[str, _RouteCollection]] = []
        self._prefixed: dict[tuple[str, int], WebsocketRoute] = {}

    def mount_ws_router(self, router: _RouteCollection, prefix: str = "") -> None:
        """Serve every route of ``router`` (or of another app), under ``prefix`` if given.

        Routes added to the router later are served too.
        """
        if prefix and not prefix.startswith("/"):
            raise ValueError(f"Mount prefixes start with '/': {prefix!r}")
        self.routers.append((prefix.rstrip("/"), router))

    def websocket(self, path: str) -> Callable[[Handler], Handler]:
        """Decorator: serve ``path`` with the decorated function (``app.websocket``)."""
        return self.ws_route(path)

    def get_routes(self) -> list[WebsocketRoute]:
        """Return the app's routes and those of its mounted routers."""
        routes = list(self.routes)
        for prefix, router in self.routers:
            for route in router.get_routes():
                if prefix:
                    key = (prefix, id(route))
                    if key not in self._prefixed:
                        self._prefixed[key] = route.with_prefix(prefix)
                    route = self._prefixed[key]
                routes.append(route)
        return routes

    @property
    def urlpatterns(self) -> list[URLPattern]:
        """The routes as Channels URL patterns: ``URLRouter(app.urlpatterns + yours)``."""
        return [route.as_urlpattern() for route in self.get_routes()]

    def as_router(self) -> URLRouter:
        """Return a Channels ``URLRouter`` over the current routes."""
        return URLRouter(self.urlpatterns)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Dispatch a WebSocket connection to its route; reject unknown paths."""
        if scope["type"] == "lifespan":
            return
        if scope["type"] != "websocket":
            raise ValueError(f"nexios_compat applications serve WebSocket scopes, not {scope['type']!r}")
        path = scope.get("path_remaining", scope.get("path", "")).lstrip("/")
        for route in self.get_routes():
            match = route.pattern.match(path)
            if match is not None:
                _, _, kwargs = match
                outer = scope.get("url_route", {})
                url_route = {"args": (), "kwargs": {**outer.get("kwargs", {}), **kwargs}}
                await route.app(dict(scope, url_route=url_route), receive, send)
                return
        # Unknown path: refuse the handshake (daphne answers 403).
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.close", "code": 1000})


def get_application(**options: typing.Any) -> NexiosCompatApplication:
    """Return a new application (for ``ProtocolTypeRouter``'s ``"websocket"`` slot)."""
    return NexiosCompatApplication(**options)
