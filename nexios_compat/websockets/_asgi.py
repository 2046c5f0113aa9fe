"""The ASGI types and connection states the websockets modules share, and the scope Nexios reads."""

from __future__ import annotations

import enum
import typing
from collections.abc import Awaitable, Callable, MutableMapping

from asgiref.sync import markcoroutinefunction

from ..objects import QueryParams

Scope = MutableMapping[str, typing.Any]
Message = MutableMapping[str, typing.Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
_App = typing.TypeVar("_App", bound=Callable[..., Awaitable[None]])


def passes_through(func: _App) -> _App:
    """Mark a plain function that returns the next application's awaitable as an ASGI 3 application.

    A middleware that awaits the next application keeps its coroutine frame
    (and what its locals hold) alive for the whole life of every socket; one
    that returns the next application's coroutine leaves nothing behind.
    asgiref and Channels tell ASGI 3 applications from ASGI 2 ones by whether
    they are coroutine functions, hence the mark.
    """
    return markcoroutinefunction(func)


async def finished() -> None:
    """An awaitable that does nothing, for a pass-through that has nothing to pass on."""


class WebSocketState(enum.Enum):
    """Connection state, tracked separately for client and application."""

    CONNECTING = 0
    CONNECTED = 1
    DISCONNECTED = 2
    # In Nexios's enum (an HTTP response instead of accept); daphne cannot send one.
    RESPONSE = 3


class WebSocketDisconnect(Exception):
    """Raised by ``receive_*`` when the client has gone away."""

    def __init__(self, code: int = 1000, reason: str | None = None) -> None:
        super().__init__(code, reason or "")
        self.code = code
        self.reason = reason or ""


def fill_scope(scope: Scope) -> Scope:
    """Add the keys Nexios handlers read (path_params, query_params, ...) to a scope.

    Nothing is parsed here: ``query_params`` parses on first read, so any scope
    a server or a test builds (``query_string`` as ``str`` included) is accepted.
    """
    scope.setdefault("headers", [])
    scope.setdefault("query_string", b"")
    if "path_params" not in scope:
        # Nexios's router stores them as "route_params"; Channels' as url_route kwargs.
        params = scope.get("route_params") or scope.get("url_route", {}).get("kwargs", {})
        # The router's own dict is not copied again: nothing else holds it.
        scope["path_params"] = params if type(params) is dict else dict(params)
    if "query_params" not in scope:
        scope["query_params"] = QueryParams(scope["query_string"])
    return scope
