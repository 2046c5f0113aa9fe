"""Mirrors ``nexios.routing``: ``Router``/``WSRouter``, ``WebsocketRoute``, ``NexiosApp``.

Routes are served as Channels consumers. A router's ``prefix`` applies where it
is mounted (``app.mount_router(router)``, ``parent.mount_router(child)``), so
routers nest as in Nexios; routes are resolved per connection, so routes added
after mounting are served too.
"""

from __future__ import annotations

import typing
import warnings
from collections.abc import Callable, Iterable

from channels.routing import URLRouter
from django.urls.resolvers import URLPattern

from .events import EventEmitter
from .websockets._asgi import finished, passes_through
from .websockets._functions import Handler
from .websockets._routes import WebsocketRoute, WebsocketRoutes
from .websockets.base import Receive, Scope, Send
from .websockets.consumers import WebSocketConsumer

__all__ = [
    "NexiosApp",
    "NexiosCompatApplication",
    "Router",
    "WSRouter",
    "WebsocketRoute",
    "WebsocketRoutes",
    "get_application",
]


def _check_prefix(prefix: str | None, kind: str) -> str:
    """Return ``prefix`` without a trailing slash; warn and add the leading one, as Nexios does."""
    prefix = (prefix or "").rstrip("/")
    if prefix and not prefix.startswith("/"):
        warnings.warn(f"{kind} prefix should start with '/'", stacklevel=3)
        prefix = f"/{prefix}"
    return prefix


class _RouteCollection:
    """Routes and mounted routers, resolved per connection; an ASGI application itself."""

    def __init__(
        self, prefix: str | Iterable[WebsocketRoute] | None = None, routes: Iterable[WebsocketRoute] = ()
    ) -> None:
        if prefix is not None and not isinstance(prefix, str):
            # ``WSRouter([WebsocketRoutes(...), ...])``, as the documents write it (Nexios
            # itself takes the list for a prefix and fails on it).
            prefix, routes = None, [*typing.cast(Iterable[WebsocketRoute], prefix), *routes]
        self.prefix = _check_prefix(prefix, type(self).__name__)
        self.routes: list[WebsocketRoute] = []
        self.mounts: list[tuple[str, _RouteCollection]] = []
        self._prefixed: dict[tuple[str, int], WebsocketRoute] = {}
        self._asgi: Callable[[Scope, Receive, Send], typing.Awaitable[None]] = self._dispatch
        for route in routes:
            self.add_ws_route(route)

    def add_ws_route(
        self,
        route: WebsocketRoute | str | None = None,
        path: str | Handler | type[WebSocketConsumer] | None = None,
        handler: Handler | type[WebSocketConsumer] | None = None,
    ) -> WebsocketRoute:
        """Add a ``WebsocketRoute``, or ``path=`` and ``handler=`` (``add_ws_route(path, handler)`` too)."""
        if isinstance(route, str):  # the documents' add_ws_route(path, handler)
            route, path, handler = None, route, handler or typing.cast(Handler, path)
        if route is None:
            if not isinstance(path, str) or handler is None:
                raise ValueError("Either route or both path and handler must be provided")
            route = WebsocketRoute(path, handler)
        if not isinstance(route, WebsocketRoute):
            raise TypeError(f"Not a WebsocketRoute: {route!r} (HTTP routes belong to Django's urls)")
        self.routes.append(route)
        return route

    def ws_route(self, path: str, handler: Handler | None = None) -> typing.Any:
        """Serve ``path`` with ``handler``, or decorate the function or endpoint class that serves it."""
        if handler is not None:
            return self.add_ws_route(path=path, handler=handler)

        def decorator(handler: Handler) -> Handler:
            self.add_ws_route(path=path, handler=handler)
            return handler

        return decorator

    def mount_router(
        self, router: _RouteCollection, name: str | None = None, prefix: str | None = None
    ) -> None:
        """Serve ``router``'s routes (and its own mounts) under ``prefix``, by default ``router.prefix``."""
        self.mounts.append((router.prefix if prefix is None else _check_prefix(prefix, "Mount"), router))

    def wrap_asgi(self, middleware_cls: Callable[..., typing.Any], **kwargs: typing.Any) -> None:
        """Wrap this router's dispatch in an ASGI middleware (the last wrapped runs first)."""
        self._asgi = middleware_cls(self._asgi, **kwargs)

    add_ws_middleware = wrap_asgi

    def get_routes(self) -> list[WebsocketRoute]:
        """Return every route with its path below this router (mounted ones prefixed), in order."""
        routes = list(self.routes)
        for prefix, router in self.mounts:
            for route in router.get_routes():
                if prefix:
                    key = (prefix, id(route))
                    if key not in self._prefixed:
                        self._prefixed[key] = route.with_prefix(prefix)
                    route = self._prefixed[key]
                routes.append(route)
        return routes

    @passes_through
    def __call__(self, scope: Scope, receive: Receive, send: Send) -> typing.Awaitable[None]:
        """Serve a WebSocket connection (through any middleware added with ``wrap_asgi``)."""
        if scope["type"] == "lifespan":
            return finished()
        if scope["type"] != "websocket":
            raise ValueError(f"nexios_compat applications serve WebSocket scopes, not {scope['type']!r}")
        return self._asgi(scope, receive, send)

    @passes_through
    def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> typing.Awaitable[None]:
        path = scope.get("path_remaining", scope.get("path", "")).lstrip("/")
        for route in self.get_routes():
            match = route.pattern.match(path)
            if match is not None:
                _, _, kwargs = match
                params = {**scope.get("url_route", {}).get("kwargs", {}), **kwargs}
                # In place, as Nexios's (Starlette's) router does, not a copy that every
                # open socket would keep: Channels' middleware above already copied it.
                scope.update(url_route={"args": (), "kwargs": params}, route_params=params)
                scope.pop("path_params", None)
                scope.setdefault("app", self)
                return route.handle(scope, receive, send)
        return _not_found(receive, send)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} prefix={self.prefix!r} routes={len(self.routes)}>"


async def _not_found(receive: Receive, send: Send) -> None:
    # Unknown path: refuse the handshake (daphne answers 403), with Nexios's code.
    message = await receive()
    if message["type"] == "websocket.connect":
        await send({"type": "websocket.close", "code": 4404})


class Router(_RouteCollection):
    """Nexios 3.12's router: WebSocket routes and nested routers under a prefix."""

    def __init__(
        self,
        prefix: str | Iterable[WebsocketRoute] | None = None,
        routes: Iterable[WebsocketRoute] = (),
        name: str | None = None,
        **options: typing.Any,
    ) -> None:
        super().__init__(prefix, routes)
        self.name = name
        # HTTP-only options (tags, dependencies, route_class, ...) do not apply here.
        self.options = options
        self.event = EventEmitter()


class WSRouter(_RouteCollection):
    """The documents' (and Nexios 3.0's) WebSocket router; the same as ``Router``."""


class NexiosApp(_RouteCollection):
    """An ASGI application for WebSocket scopes, with Nexios's route-registration API.

    It takes ``NexiosApp``'s keyword arguments (``title``, ``debug``, ...);
    those about HTTP or OpenAPI have no effect. ``urlpatterns`` exposes the
    routes to a site's own Channels ``URLRouter``.
    """

    def __init__(self, routes: Iterable[WebsocketRoute] = (), **options: typing.Any) -> None:
        super().__init__(None, routes)
        self.options = options
        self.state: dict[str, typing.Any] = {}
        # Nexios's ``app.events``; ``EventEmitter(across_processes=True)`` shares it between processes.
        self.events = EventEmitter()

    @property
    def router(self) -> NexiosApp:
        """The app itself (Nexios's ``app.router``, where routes and mounts live)."""
        return self

    def mount_ws_router(self, router: _RouteCollection, prefix: str | None = None) -> None:
        """Serve every route of ``router`` (or of another app) under ``prefix``, by default its own.

        A ``prefix`` replaces the router's (the documents: "this will override /ws").
        """
        self.mount_router(router, prefix=prefix)

    @passes_through
    def __call__(self, scope: Scope, receive: Receive, send: Send) -> typing.Awaitable[None]:
        """Serve a WebSocket connection, once this process receives the app's shared events."""
        if scope["type"] == "websocket" and getattr(self.events, "across_processes", True):
            return self._subscribed(scope, receive, send)
        return super().__call__(scope, receive, send)

    async def _subscribed(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.events.subscribe()
        await super().__call__(scope, receive, send)

    def websocket(self, path: str) -> Callable[[Handler], Handler]:
        """Decorator: serve ``path`` with the decorated function (``app.websocket``)."""
        return typing.cast(Callable[[Handler], Handler], self.ws_route(path))

    @property
    def urlpatterns(self) -> list[URLPattern]:
        """The routes as Channels URL patterns: ``URLRouter(app.urlpatterns + yours)``."""
        return [route.as_urlpattern() for route in self.get_routes()]

    def as_router(self) -> URLRouter:
        """Return a Channels ``URLRouter`` over the current routes."""
        return URLRouter(self.urlpatterns)


# The name this package first gave the application class.
NexiosCompatApplication = NexiosApp


def get_application(**options: typing.Any) -> NexiosApp:
    """Return a new application (for ``ProtocolTypeRouter``'s ``"websocket"`` slot)."""
    return NexiosApp(**options)
