"""Mirrors ``nexios.websockets.errors``: ``WebSocketErrorMiddleware``.

Our handlers already close their own socket on an error (1011, or a
``WebSocketException``'s code); the middleware matters for other ASGI apps it
wraps, and for code written for Nexios that wraps apps in it.
"""

from __future__ import annotations

import logging
import typing

from ..exceptions import WebSocketException
from .base import Message, Receive, Scope, Send, WebSocket, WebSocketState

__all__ = ["WebSocketErrorMiddleware", "websocket_exception_handler"]

logger = logging.getLogger("nexios_compat.websockets")

ASGIApp = typing.Callable[[Scope, Receive, Send], typing.Awaitable[None]]


async def websocket_exception_handler(websocket: WebSocket, exc: WebSocketException) -> None:
    """Close ``websocket`` with the exception's code and text."""
    logger.error("WebSocket error: %r", exc)
    await websocket.close(code=exc.code, reason=str(exc))


class _SendTracker:
    """Records what the app sends, so that the middleware's close matches the socket's state.

    ``real_send`` is the name Channels' session wrapper uses: ``unwrap_session_send``
    sees through this wrapper too, so close codes daphne refuses through ASGI (1008,
    1011, ...) still reach the client (see ``server.daphne_close``).
    """

    def __init__(self, send: Send) -> None:
        self.real_send = send
        self.sent: set[str] = set()

    async def send(self, message: Message) -> None:
        """Record the message type and pass the message on."""
        self.sent.add(message["type"])
        await self.real_send(message)


class WebSocketErrorMiddleware:
    """Close the socket when the app raises: a ``WebSocketException``'s code, else 1011."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app; turn an exception it raises into a close frame."""
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        tracker = _SendTracker(send)
        try:
            await self.app(scope, receive, tracker.send)
        except Exception as exc:
            if "websocket.close" in tracker.sent:
                logger.exception("WebSocket app failed after closing its socket")
                return
            websocket = WebSocket(scope, receive, send)
            if "websocket.accept" in tracker.sent:
                websocket.client_state = WebSocketState.CONNECTED
                websocket.application_state = WebSocketState.CONNECTED
            if isinstance(exc, WebSocketException):
                await websocket_exception_handler(websocket, exc)
            else:
                logger.exception("Unexpected error in a WebSocket app")
                await websocket.close(code=1011, reason="Internal Server Error")
