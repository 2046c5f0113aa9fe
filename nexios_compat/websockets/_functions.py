"""``FunctionConsumer``: runs a function handler ``async def handler(ws, **path_params)``."""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Awaitable, Callable, Coroutine

from channels.consumer import AsyncConsumer

from ..engine import Hub
from ._asgi import passes_through
from ._serving import close_code_for, finish, leave_now, serve
from .base import Receive, Scope, Send, WebSocket
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

    @passes_through
    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """Run the handler; a failure closes only this socket, with 1011."""
        self.scope = scope
        return serve(WebSocket(scope, receive, send), self._begin)

    def _begin(self, hub: Hub, websocket: WebSocket) -> Coroutine[typing.Any, typing.Any, None]:
        self.channel_layer = hub.layer
        return self._handle_connection(hub, websocket)

    async def _handle_connection(self, hub: Hub, websocket: WebSocket) -> None:
        # One frame from the task to the handler: the close code's bookkeeping is
        # awaited only once the handler has ended (``close_code_for``).
        close_code = WS_1000_NORMAL_CLOSURE  # if the server cancels the handler
        try:
            try:
                await self.handler(websocket, **self._params(websocket))
            except Exception as exc:
                close_code = await close_code_for(websocket, exc, self.handler.__qualname__)
        except BaseException:
            # Cancellation (or a failure to close) ends the handler here: its
            # rooms are left before the exception travels on.
            leave_now(hub, websocket)
            raise
        finally:
            await finish(hub, websocket, close_code)

    def _params(self, websocket: WebSocket) -> dict[str, typing.Any]:
        """The path parameters the handler takes."""
        return {
            name: value
            for name, value in websocket.path_params.items()
            if self._takes_all or name in self._accepted
        }
