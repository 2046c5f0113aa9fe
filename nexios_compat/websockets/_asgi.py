"""The ASGI types and connection states the websockets modules share."""

from __future__ import annotations

import enum
import typing
from collections.abc import Awaitable, Callable, MutableMapping

Scope = MutableMapping[str, typing.Any]
Message = MutableMapping[str, typing.Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


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
