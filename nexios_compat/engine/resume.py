"""The resume contract: replay everything a client missed, or nothing and say so.

A client's position in a room is a sequence number plus the room's epoch
(Centrifugo's offset and epoch). The epoch changes whenever the room's history
can no longer be continued: a flush, or the room being recreated. A resume is
*recovered* only when the epoch is the client's and every saved message after
its position is still stored; then all of them are replayed, in order, before
live ones. Otherwise nothing is replayed and the client is told to reload.
"""

from __future__ import annotations

import dataclasses
import typing

from ..encoding import dumps
from ..stores.history import Position
from ..types import ChannelMessageDC


@dataclasses.dataclass(frozen=True)
class Resume:
    """The answer to one resume: what to tell the client and what to replay."""

    room: str
    recovered: bool
    epoch: str
    last_seq: int
    # Replayed after the answer; empty unless recovered.
    messages: list[ChannelMessageDC]

    def frame(self) -> dict[str, typing.Any]:
        """Return the ASGI message that tells the client the outcome (always JSON text)."""
        body = {
            "type": "resume",
            "room": self.room,
            "epoch": self.epoch,
            "recovered": self.recovered,
            "last_seq": self.last_seq,
        }
        return {"type": "websocket.send", "text": dumps(body)}


def decide(room: str, position: Position, since: int, epoch: str) -> Resume:
    """Judge a client's ``(since, epoch)`` against what the room has now.

    Decided in O(1) whatever the room's ``last_seq``.
    """
    messages = position.messages
    last = max(position.last_seq, messages[-1].seq or 0) if messages else position.last_seq
    # An empty epoch with since=0 means "I have nothing yet": any epoch continues it.
    same_epoch = epoch == position.epoch or (since == 0 and epoch == "")
    # Seqs are unique and ascending, so n of them running from since+1 to
    # since+n are exactly that range: no need to build it (since=0 against a
    # long-lived room would allocate gigabytes on the event loop).
    if messages:
        complete = messages[0].seq == since + 1 and messages[-1].seq == last and len(messages) == last - since
    else:
        complete = last == since
    if same_epoch and since <= last and complete and position.complete:
        return Resume(room, True, position.epoch, last, messages)
    return Resume(room, False, position.epoch, last, [])
