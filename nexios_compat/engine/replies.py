"""What the sender of a saved broadcast is told: its ack once stored, or that it was not.

Only the socket that sent it hears (a sender without an id never gets an ack).
The ack follows the sender's own echo: when the echo is held behind another
process's gap (``RoomOrdering``), the ack waits for it too.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Coroutine

from ..encoding import ack_frame
from ..exceptions import HistoryUnavailable
from ..stores.history import PendingMessage, SavedMessage
from .ordering import RoomOrdering
from .protocols import LocalMember
from .registry import LocalRegistry

Spawn = Callable[[Coroutine[typing.Any, typing.Any, None], str], None]


class SenderReplies:
    """Acks and failure frames for the senders of saved broadcasts, through the local registry."""

    def __init__(self, registry: LocalRegistry, ordering: RoomOrdering, spawn: Spawn) -> None:
        self.registry = registry
        self.ordering = ordering
        self.spawn = spawn

    async def ack(self, message: PendingMessage, saved: SavedMessage) -> None:
        """Tell the sending socket its message is stored (after its echo)."""
        member = self.registry.get(message.sender) if message.sender is not None else None
        if member is None or message.client_id is None:
            return
        text = ack_frame(message.client_id, message.room, saved.seq, saved.epoch)
        if self.ordering.holding(message.room):
            self.spawn(self._ack_when_settled(member, message.room, text), "ack")
        else:
            await member.send_frame({"type": "websocket.send", "text": text})

    async def _ack_when_settled(self, member: LocalMember, room: str, text: str) -> None:
        await self.ordering.settled([room])
        await member.send_frame({"type": "websocket.send", "text": text})

    async def unavailable(self, message: PendingMessage) -> None:
        """Tell a socket that moved on that its send was not stored (the frame names its id)."""
        member = self.registry.get(message.sender) if message.sender is not None else None
        if member is not None:
            member.failed_saves += 1
            ids = (message.client_id,) if message.client_id is not None else ()
            frame = HistoryUnavailable(ids=ids).client_frame
            await member.send_frame({"type": "websocket.send", "text": frame})
