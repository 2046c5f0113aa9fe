"""Errors that refuse a join or a message, each with the close code the client sees."""

from __future__ import annotations

import json

from .types import (
    WS_4403_FORBIDDEN,
    WS_4409_ROOM_FULL,
    WS_4413_TOO_MANY_ROOMS,
)


class WebSocketException(Exception):
    """Raise in a handler to close its socket with ``code`` (Nexios's ``nexios.exceptions`` name)."""

    def __init__(self, code: int, reason: str | None = None) -> None:
        super().__init__(reason or "")
        self.code = code
        self.reason: str = self.args[0]

    def __str__(self) -> str:
        return f"WebSocket {self.code}: {self.reason}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code}, {self.reason!r})"


class RoomRefused(WebSocketException):
    """A join was refused; endpoints close the socket with ``code`` and ``reason``."""

    code = WS_4403_FORBIDDEN

    def __init__(self, reason: str) -> None:
        super().__init__(type(self).code, reason)

    def __str__(self) -> str:
        return self.reason


class RoomAccessDenied(RoomRefused):
    """``authorize()`` (or a required permission) refused the room: close 4403."""

    code = WS_4403_FORBIDDEN


class RoomFull(RoomRefused):
    """The room has ``MAX_MEMBERS_PER_ROOM`` members already: close 4409."""

    code = WS_4409_ROOM_FULL


class TooManyRooms(RoomRefused):
    """The connection is in ``MAX_ROOMS_PER_CONNECTION`` rooms already: close 4413."""

    code = WS_4413_TOO_MANY_ROOMS


class PayloadTooLarge(ValueError):
    """A payload to be saved is larger than ``MAX_HISTORY_PAYLOAD`` bytes."""


class HistoryUnavailable(RuntimeError):
    """A saved send could not be stored within ``HISTORY_WRITE_TIMEOUT`` (the database is down or stalled).

    Nothing was sent. Endpoints answer the client with ``frame`` and keep the
    socket open; a send accepted before the writer knew the database was down
    (its sender had moved on) gets the same frame on the sending channel, and
    the socket's next own send raises this (``reported`` set), once. A send
    that had a client id is named in the frame (``client_frame``):
    ``{"type":"error","error":"history_unavailable","ids":[...]}``.
    """

    frame = '{"type":"error","error":"history_unavailable"}'

    def __init__(self, *args: object, reported: bool = False, ids: tuple[str, ...] = ()) -> None:
        super().__init__(*args)
        # The client was already sent ``frame`` for it: handlers need not send it again.
        self.reported = reported
        # Client ids of the sends that were not stored (to be sent again, in this order).
        self.ids = ids

    @property
    def client_frame(self) -> str:
        """The error frame for the client: ``frame``, with the ids of the sends that failed."""
        if not self.ids:
            return self.frame
        return json.dumps({"type": "error", "error": "history_unavailable", "ids": list(self.ids)})
