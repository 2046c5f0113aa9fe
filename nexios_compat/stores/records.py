"""What moves between history stores and the rest: messages to save, what saving assigned, positions."""

from __future__ import annotations

import dataclasses
import datetime
import uuid

from ..encoding import KIND_BYTES
from ..types import ChannelMessageDC


@dataclasses.dataclass
class PendingMessage:
    """A message on its way to history: packed payload plus who sent it."""

    room: str
    kind: str
    text: str | None
    data: bytes | None
    sender: uuid.UUID | None = None
    # Idempotent sends: the client's id for this message, and whose id space it is in
    # ("user:<pk>", "anon:<id>", "channel:<id>"); stored at most once per room and sender_key.
    client_id: str | None = None
    sender_key: str | None = None

    @property
    def idempotency_key(self) -> tuple[str, str, str] | None:
        """``(room, sender_key, client_id)`` when the message is to be stored at most once."""
        if self.client_id is None or self.sender_key is None:
            return None
        return self.room, self.sender_key, self.client_id


@dataclasses.dataclass(frozen=True)
class SavedMessage:
    """What the store assigned to a pending message."""

    seq: int
    uuid: uuid.UUID
    created: datetime.datetime
    # The room's epoch when the number was handed out ("" from stores without epochs).
    epoch: str = ""
    # True when the message was a retry of one already stored: this is the first one's record.
    duplicate: bool = False


@dataclasses.dataclass(frozen=True)
class Appended:
    """What ``append_available`` stored (in order) and the rooms it set aside because their row was busy."""

    saved: list[SavedMessage]
    busy: frozenset[str] = frozenset()


@dataclasses.dataclass(frozen=True)
class Position:
    """A room's stream position as read at one moment: epoch, counter, and saved messages after a point."""

    epoch: str
    last_seq: int
    messages: list[ChannelMessageDC]
    # False when the read stopped at a bound (count or bytes): more may follow.
    complete: bool = True


def payload_size(message: PendingMessage) -> int:
    """Return a payload's size in bytes: the bytes, or the UTF-8 of the text or JSON."""
    if message.kind == KIND_BYTES:
        return len(message.data or b"")
    return len((message.text or "").encode("utf-8"))
