"""``FunctionConsumer``: runs a function handler ``async def handler(ws, **path_params)``."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable

from channels.consumer import AsyncConsumer

from ..engine import Hub
from ..exceptions import WebSocketException
from .base import Receive, Scope, Send, WebSocket, WebSocketDisconnect
from .serving import finish, open_socket, serve
from .utils import WS_1000_NORMAL_CLOSURE, WS_1011_INTERNAL_ERROR

logger = logging.getLogger("nexios_compat.consumers")

Handler = Callable[..., Awaitable[None]]


class FunctionConsumer(AsyncConsumer):
    """Runs a function handler ``async def handler(ws, **path_params)`` as a consumer."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        parameters = inspect.signature(handler).parameters.values()
        self._takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
        self._accepted = {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the handler; a failure closes only this socket, with 1011."""
        self.scope = scope
        websocket = WebSocket(scope, receive, send)
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
        close_code = WS_1000_NORMAL_CLOSURE
        try:
            await self.handler(websocket, **params)
        except WebSocketDisconnect as exc:
            close_code = exc.code
        except WebSocketException as exc:
            close_code = exc.code
            await websocket.close(exc.code, str(exc))
        except Exception:
            close_code = WS_1011_INTERNAL_ERROR
            logger.exception(
                "WebSocket handler %s failed; closing the socket with 1011",
                self.handler.__qualname__,
            )
            await websocket.close(WS_1011_INTERNAL_ERROR, "Internal error")
        finally:
            await finish(hub, websocket, close_code)
