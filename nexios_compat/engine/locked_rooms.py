"""Rooms the history writer set aside: another transaction holds their row, so their messages wait here.

A room whose row is busy (an admin's ``SELECT … FOR UPDATE``, a view's long
``atomic()``) must not hold every other room's saves. The writer stores the
other rooms and puts the busy room's messages here, in order; every later
message of that room joins them behind, so the room's order holds. The room is
retried after a pause that doubles while it stays busy, and no later than when
its oldest saved message would pass ``write_timeout``: then the messages past
it fail with ``HistoryUnavailable`` and the rest keep waiting.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
from collections.abc import Callable, Iterable

from ..stores.history import PendingMessage, SavedMessage

# First and longest pause before a busy room is tried again.
FIRST_RETRY_DELAY = 0.05
MAX_RETRY_DELAY = 1.0


@dataclasses.dataclass
class Entry:
    """A message the writer accepted: numbered by ``ticket``, at loop time ``accepted``."""

    message: PendingMessage
    save: bool
    size: int
    done: asyncio.Future[SavedMessage | None] | None
    ticket: int
    accepted: float


@dataclasses.dataclass
class _Room:
    entries: collections.deque[Entry]
    retry_at: float


class HeldRooms:
    """The set-aside rooms of one writer, each with its messages in order and its next retry."""

    def __init__(self, write_timeout: float | None) -> None:
        self.write_timeout = write_timeout
        self._rooms: dict[str, _Room] = {}
        # The next pause of a room that was busy at its last attempt (kept while it is retried).
        self._delays: dict[str, float] = {}

    def __contains__(self, room: object) -> bool:
        return room in self._rooms

    def __len__(self) -> int:
        return len(self._rooms)

    def set_aside(self, room: str, entries: list[Entry], now: float) -> list[Entry]:
        """Hold a busy room's entries; return those to settle now instead (past the deadline, in order).

        The returned entries are the ones up to the last saved message whose
        deadline passed and the unsaved ones right behind it, or all of them if
        no saved message is left to wait for.
        """
        expired = self._expired(entries, now)
        rest = entries[expired:]
        if not any(entry.save for entry in rest):
            self.settled(room)
            return entries
        delay = self._delays.get(room, FIRST_RETRY_DELAY)
        self._delays[room] = min(delay * 2, MAX_RETRY_DELAY)
        retry_at = now + delay
        if self.write_timeout is not None:
            oldest = next(entry for entry in rest if entry.save)
            retry_at = min(retry_at, oldest.accepted + self.write_timeout)
        self._rooms[room] = _Room(collections.deque(rest), retry_at)
        return entries[:expired]

    def _expired(self, entries: list[Entry], now: float) -> int:
        if self.write_timeout is None:
            return 0
        end = 0
        for index, entry in enumerate(entries):
            if entry.save and entry.accepted + self.write_timeout <= now:
                end = index + 1
        if end:
            # Unsaved messages right behind the failed ones have nothing left to wait for.
            while end < len(entries) and not entries[end].save:
                end += 1
        return end

    def follow(self, entry: Entry) -> None:
        """Queue a later message of a held room behind the ones held."""
        self._rooms[entry.message.room].entries.append(entry)

    def remove(self, predicate: Callable[[Entry], bool]) -> list[Entry]:
        """Take the held entries ``predicate`` picks out of their rooms; return them."""
        taken: list[Entry] = []
        for room, held in list(self._rooms.items()):
            kept = collections.deque(entry for entry in held.entries if not predicate(entry))
            if len(kept) == len(held.entries):
                continue
            taken.extend(entry for entry in held.entries if predicate(entry))
            held.entries = kept
            if not kept:
                del self._rooms[room]
                self.settled(room)
            elif not any(entry.save for entry in kept):
                held.retry_at = 0.0  # nothing saved left to wait for: the unsaved ones go next
        return taken

    def due(self, now: float) -> list[str]:
        """Rooms whose retry time has come."""
        return [room for room, held in self._rooms.items() if held.retry_at <= now]

    def take(self, room: str) -> Iterable[Entry]:
        """Release a room to be tried again: its entries, oldest first."""
        return self._rooms.pop(room).entries

    def settled(self, room: str) -> None:
        """A room's messages were stored (or failed): its next busy spell starts with the first pause."""
        self._delays.pop(room, None)

    def next_retry(self) -> float | None:
        """The loop time of the earliest retry, if any room is held."""
        return min((held.retry_at for held in self._rooms.values()), default=None)
