"""``FunctionConsumer``: runs a function handler ``async def handler(ws, **path_params)``."""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Awaitable, Callable

from channels.consumer import AsyncConsumer

from ..engine import Hub
from ._serving import finish, open_socket, run_handler, serve
from .base import Receive, Scope, Send, WebSocket, current_websocket
from .utils import WS_1000_NORMAL_CLOSURE

Handler = Callable[..., Awaitable[None]]


@functools.lru_cache(maxsize=1024)
def _parameters(handler: Handler) -> tuple[bool, frozenset[str]]:
    """Whether ``handler`` takes ``**kwargs``, and the names of the path parameters it accepts."""
    parameters = inspect.signature(handler).parameters.values()
    takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return takes_all, frozenset(p.name for p in parameters if p.kind in named)


class FunctionConsumer(AsyncConsumer):
    """Runs a function handler ``async def handler(ws, **path_params)`` as a consumer."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        # One consumer per connection: the signature is read once per handler, not per socket.
        try:
            self._takes_all, self._accepted = _parameters(handler)
        except TypeError:  # an unhashable callable
            self._takes_all, self._accepted = _parameters.__wrapped__(handler)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the handler; a failure closes only this socket, with 1011."""
        self.scope = scope
        websocket = WebSocket(scope, receive, send)
        current_websocket.set(websocket)
        hub = await open_socket(websocket)
        if hub is None:
            return
        self.channel_layer = hub.layer
        await serve(hub, websocket, self._handle_connection(hub, websocket))

    async def _handle_connection(self, hub: Hub, websocket: WebSocket) -> None:
        params = {
            name: value
            for name, value in websocket.path_params.items()
            if self._takes_all or name in self._accepted
        }
        close_code = WS_1000_NORMAL_CLOSURE  # if the server cancels the handler
        try:
            close_code = await run_handler(
                hub, websocket, self._run(websocket, params), self.handler.__qualname__
            )
        finally:
            await finish(hub, websocket, close_code)

    async def _run(self, websocket: WebSocket, params: dict[str, typing.Any]) -> int:
        await self.handler(websocket, **params)
        return WS_1000_NORMAL_CLOSURE
