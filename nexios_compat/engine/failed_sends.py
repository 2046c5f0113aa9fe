"""A socket's saved sends that failed: its later ones in the room wait until it sends them again.

A client that gives its sends ids (``rooms.js`` does) keeps those not yet
acknowledged and sends them again, oldest first. If a send failed with
``HistoryUnavailable`` (the database stayed down past ``HISTORY_WRITE_TIMEOUT``)
while a later one of the same socket was stored, the resend would land after
it: out of the order typed. So once a send with an id fails, every send of that
socket to that room with an id fails too — those already queued at once, later
ones as they come — until the socket sends the failed ids again in the order
they failed. A resend of the oldest is accepted; the socket's next new send is
accepted once every failed one was sent again (one that fails again keeps its
place, ahead of those that failed after it). Per socket, not per user: one tab's outage does not hold
another tab back, and a reconnection (a new socket) starts clear, since the
client resends everything unacknowledged first.

Bounded: at most ``limit`` ids are remembered per socket and room (a send
refused past that is still refused, and accepted once the remembered ones are
sent again), at most ``total`` in all (past it a failure is not remembered: the
order promise then lapses for that socket, nothing else); a socket's entries go
when it ends (``forget``).
"""

from __future__ import annotations

import itertools
import typing
import uuid
from collections.abc import Callable

from ..exceptions import HistoryUnavailable
from ..stores.records import PendingMessage

# Ids remembered per socket and room, and in all (however many rooms a socket sends to).
DEFAULT_LIMIT = 1000
DEFAULT_TOTAL = 100_000

Key = tuple[uuid.UUID, str]


def key_of(message: PendingMessage) -> Key | None:
    """The socket and room a saved send with an id belongs to (``None``: no promise of order)."""
    if message.sender is None or message.client_id is None:
        return None
    return message.sender, message.room


def unavailable(message: PendingMessage, cause: BaseException | None = None) -> HistoryUnavailable:
    """The error a failed send with an id answers with: it names the id."""
    error = HistoryUnavailable(
        "History could not be saved in time; nothing was sent",
        ids=(message.client_id,) if message.client_id is not None else (),
    )
    error.__cause__ = cause
    return error


class _Socket:
    """One socket's failed ids in a room: each with its rank (the order they failed in)."""

    __slots__ = ("ranks", "sent_again")

    def __init__(self) -> None:
        self.ranks: dict[str, int] = {}
        # Failed ids the socket sent again, on their way to the store (not pending any more).
        self.sent_again: set[str] = set()

    def oldest_pending(self) -> str | None:
        pending = [client_id for client_id in self.ranks if client_id not in self.sent_again]
        return min(pending, key=self.ranks.__getitem__, default=None)


class FailedSends:
    """Per socket and room, the ids of failed saved sends not yet stored, in the order they failed.

    ``alive`` tells whether a socket is still connected: a send of one that ended
    may fail later (it was accepted), but nothing is kept for it then.
    """

    def __init__(
        self,
        limit: int = DEFAULT_LIMIT,
        alive: Callable[[uuid.UUID], bool] | None = None,
        total: int = DEFAULT_TOTAL,
    ) -> None:
        self.limit = max(1, limit)
        self.total = max(1, total)
        self.alive = alive
        self._sockets: dict[Key, _Socket] = {}
        self._count = 0  # ids remembered, over every socket and room
        self._ranks = itertools.count()

    def __len__(self) -> int:
        return len(self._sockets)

    def remembered(self, key: Key) -> list[str]:
        """The failed ids of a socket in a room not yet stored, oldest first."""
        socket = self._sockets.get(key)
        return sorted(socket.ranks, key=socket.ranks.__getitem__) if socket is not None else []

    def failed(self, key: Key, client_id: str) -> None:
        """Remember a failed send; one sent again and failed again keeps its place."""
        socket = self._sockets.get(key)
        if socket is not None and client_id in socket.ranks:
            socket.sent_again.discard(client_id)
            return
        if self._count >= self.total or (socket is not None and len(socket.ranks) >= self.limit):
            return
        if socket is None:
            if self.alive is not None and not self.alive(key[0]):
                return  # the socket ended: its next connection resends everything anyway
            socket = self._sockets[key] = _Socket()
        socket.ranks[client_id] = next(self._ranks)
        self._count += 1

    def admit(self, message: PendingMessage) -> None:
        """Let a saved send in, or raise ``HistoryUnavailable`` naming it (and remember it).

        Admitted: a send of a socket with no failed send in the room left to send
        again, the resend of the oldest of them, or another copy of one already
        sent again.
        """
        key = key_of(message)
        socket = self._sockets.get(key) if key is not None else None
        if socket is None:
            return
        client_id = typing.cast(str, message.client_id)
        oldest = socket.oldest_pending()
        if oldest is None or client_id in socket.sent_again:
            return
        if client_id == oldest:
            socket.sent_again.add(client_id)
            return
        self.failed(typing.cast(Key, key), client_id)
        raise unavailable(message)

    def done(self, message: PendingMessage) -> None:
        """A send was stored (or refused for good): it has no place to keep any more."""
        key = key_of(message)
        socket = self._sockets.get(key) if key is not None else None
        if socket is None:
            return
        if socket.ranks.pop(typing.cast(str, message.client_id), None) is not None:
            self._count -= 1
        socket.sent_again.discard(typing.cast(str, message.client_id))
        if not socket.ranks:
            del self._sockets[typing.cast(Key, key)]

    def forget(self, sender: uuid.UUID) -> None:
        """Drop what is remembered of a socket (it ended)."""
        for key in [key for key in self._sockets if key[0] == sender]:
            self._count -= len(self._sockets.pop(key).ranks)
