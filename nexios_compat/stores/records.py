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


@dataclasses.dataclass(frozen=True)
class SavedMessage:
    """What the store assigned to a pending message."""

    seq: int
    uuid: uuid.UUID
    created: datetime.datetime
    # The room's epoch when the number was handed out ("" from stores without epochs).
    epoch: str = ""


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
