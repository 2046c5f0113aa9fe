"""Room history: pluggable stores, and the async service the rest of the package reads them through."""

from __future__ import annotations

import collections
import datetime
import logging
import typing
import uuid

from django.db import connection, transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from ..conf import get_config
from ..encoding import pack, unpack
from ..types import ChannelMessageDC
from ._dedupe import Plan, idempotent
from ._numbering import (
    RoomsMissing,
    insert_messages,
    lock_rooms,
    take_free_numbers,
    take_numbers,
    take_numbers_in_order,
)
from .records import Appended, PendingMessage, Position, SavedMessage, payload_size

__all__ = [
    "Appended",
    "BaseHistoryStore",
    "DatabaseHistoryStore",
    "PendingMessage",
    "Position",
    "SavedMessage",
    "get_history_store",
    "payload_size",
]

logger = logging.getLogger("nexios_compat.stores.history")


class BaseHistoryStore:
    """Where saved messages live; methods are synchronous and run on the ORM thread."""

    def refuse(self, message: PendingMessage) -> None:
        """Raise ``ValueError`` for a message this store cannot hold (checked before it is queued)."""

    def append(self, messages: list[PendingMessage]) -> list[SavedMessage]:
        """Store messages in order, numbering each room's messages; return what was assigned."""
        raise NotImplementedError

    def append_available(self, messages: list[PendingMessage], lock_timeout: float) -> Appended:
        """Store the messages of rooms that can be numbered now; set aside rooms another transaction holds.

        Stores that cannot tell store everything (``append``) and set nothing aside.
        """
        return Appended(self.append(messages))

    def fetch(self, room: str, since: int | None = None, limit: int | None = None) -> list[ChannelMessageDC]:
        """Return a room's messages with ``seq > since``, oldest first (the newest ``limit``)."""
        raise NotImplementedError

    def fetch_all(self) -> dict[str, list[ChannelMessageDC]]:
        """Return every room's messages, oldest first."""
        raise NotImplementedError

    def last_seq(self, room: str) -> int:
        """Return the highest sequence number handed out in a room (0 if none), flushed or not."""
        newest = self.fetch(room, None, 1)
        return (newest[-1].seq or 0) if newest else 0

    def head(self, room: str) -> tuple[int, str]:
        """Return the room's counter and epoch ("" from stores without epochs)."""
        return self.last_seq(room), ""

    def read(self, room: str, since: int, limit: int | None = None, max_bytes: int | None = None) -> Position:
        """Return the room's epoch and counter with its messages after ``since``, read together.

        At most ``limit`` messages and ``max_bytes`` of payload: past either the
        position says it is not ``complete``.
        """
        last = self.last_seq(room)
        if limit is not None and last - since > limit:
            return Position("", last, [], complete=False)
        messages, complete = bounded(self.fetch(room, since), limit, max_bytes)
        return Position("", last, messages, complete)

    def page(self, room: str, before: int | None, limit: int) -> list[ChannelMessageDC]:
        """Return up to ``limit`` of a room's messages with ``seq < before``, newest first."""
        older = [m for m in self.fetch(room) if before is None or (m.seq or 0) < before]
        return list(reversed(older[-limit:])) if limit > 0 else []

    def flush(self, room: str | None = None) -> int:
        """Delete the messages of one room, or of every room (starting a new epoch); return how many."""
        raise NotImplementedError

    def prune(self) -> int:
        """Apply retention; return how many messages were deleted."""
        raise NotImplementedError


class DatabaseHistoryStore(BaseHistoryStore):
    """History in the ``Room`` and ``Message`` models."""

    def refuse(self, message: PendingMessage) -> None:
        """Refuse text PostgreSQL cannot store (a NUL character)."""
        if connection.vendor == "postgresql" and message.text is not None and "\x00" in message.text:
            raise ValueError("A saved message's text cannot contain NUL (\\x00) characters on PostgreSQL")

    def append(self, messages: list[PendingMessage]) -> list[SavedMessage]:
        """Store messages in one transaction; each room's numbers come from one ``UPDATE … RETURNING``."""
        from ..models import Room

        try:
            return self._append_numbered(messages)
        except RoomsMissing as missing:
            # Rooms are created outside the numbering transaction: inserting a row
            # while holding other rooms' locks could deadlock with a batch that
            # inserted it first and now waits for ours.
            Room.objects.bulk_create([Room(name=name) for name in missing.names], ignore_conflicts=True)
        return self._append_numbered(messages)

    def append_available(self, messages: list[PendingMessage], lock_timeout: float) -> Appended:
        """On PostgreSQL, lock the rooms' rows without waiting long; rooms whose row stays busy are set aside.

        A row that another transaction holds (an admin's ``SELECT … FOR UPDATE``,
        a view's open ``atomic()``) then delays only its own room's messages.
        SQLite locks the whole file for every writer, so there everything is
        stored as by ``append``.
        """
        from ..models import Room

        if connection.vendor != "postgresql":
            return Appended(self.append(messages))
        try:
            return self._append_available(messages, lock_timeout)
        except RoomsMissing as missing:
            Room.objects.bulk_create([Room(name=name) for name in missing.names], ignore_conflicts=True)
        return self._append_available(messages, lock_timeout)

    def _append_available(self, messages: list[PendingMessage], lock_timeout: float) -> Appended:
        return idempotent(lambda look_up: self._available_once(messages, lock_timeout, look_up))

    def _available_once(self, messages: list[PendingMessage], lock_timeout: float, look_up: bool) -> Appended:
        now = timezone.now()
        with transaction.atomic():
            plan = Plan(messages, look_up)
            counts = collections.Counter(message.room for message in plan.fresh)
            # One statement numbers every room, waiting briefly (in name order) for
            # rows another writer holds. If one stays busy, one statement numbers
            # every room whose row is free (a round trip matters: on a distant
            # database each one holds the rows longer) and the rest are waited
            # for one by one, then set aside.
            numbered = take_numbers_in_order(counts, now, lock_timeout) if counts else {}
            if numbered is None:
                numbered = take_free_numbers(counts, now)
            rest = [name for name in sorted(counts) if name not in numbered]
            busy = lock_rooms(rest, lock_timeout) if rest else set()
            for name in rest:
                if name not in busy:
                    row = take_numbers(name, counts[name], now)
                    if row is None:
                        raise RoomsMissing([name])
                    numbered[name] = row
            kept = [message for message in plan.fresh if message.room not in busy]
            saved = self._insert(kept, numbered, now) if kept else []
        return Appended(plan.answers(saved, busy), frozenset(busy))

    def _append_numbered(self, messages: list[PendingMessage]) -> list[SavedMessage]:
        return idempotent(lambda look_up: self._numbered_once(messages, look_up))

    def _numbered_once(self, messages: list[PendingMessage], look_up: bool) -> list[SavedMessage]:
        with transaction.atomic():
            plan = Plan(messages, look_up)
            return plan.answers(self._number(plan.fresh))

    def _number(self, messages: list[PendingMessage]) -> list[SavedMessage]:
        """Number and insert messages; the caller's transaction must be open."""
        counts = collections.Counter(message.room for message in messages)
        now = timezone.now()
        # Rooms in one global order, so that concurrent batches never deadlock.
        numbered = {name: take_numbers(name, counts[name], now) for name in sorted(counts)}
        missing = [name for name, row in numbered.items() if row is None]
        if missing:
            raise RoomsMissing(missing)  # rolls back the numbers already taken
        if not messages:
            return []
        return self._insert(messages, typing.cast(dict[str, tuple[int, int, str]], numbered), now)

    @staticmethod
    def _insert(
        messages: list[PendingMessage], numbered: dict[str, tuple[int, int, str]], now: datetime.datetime
    ) -> list[SavedMessage]:
        """Insert messages numbered by their rooms' ``(id, new last_seq, epoch)``; return what was saved."""
        counts = collections.Counter(message.room for message in messages)
        next_seq = {name: numbered[name][1] - counts[name] for name in counts}
        room_ids = {name: numbered[name][0] for name in counts}
        epochs = {name: numbered[name][2] for name in counts}
        saved = []
        rows = []
        for message in messages:
            next_seq[message.room] += 1
            record = SavedMessage(next_seq[message.room], uuid.uuid4(), now, epochs[message.room])
            saved.append(record)
            rows.append((room_ids[message.room], record, message))
        insert_messages(rows)
        return saved

    @staticmethod
    def _to_dc(room: str, row: typing.Any) -> ChannelMessageDC:
        return ChannelMessageDC(
            payload=unpack(row.kind, row.text, row.data),
            uuid=row.uuid,
            created=row.created,
            seq=row.seq,
            room=room,
            sender=row.sender,
        )

    def fetch(self, room: str, since: int | None = None, limit: int | None = None) -> list[ChannelMessageDC]:
        """Return a room's messages after ``since``, oldest first."""
        from ..models import Message

        rows = Message.objects.filter(room__name=room)
        if since is not None:
            rows = rows.filter(seq__gt=since)
        if limit is not None:
            newest = list(rows.order_by("-seq")[:limit])
            newest.reverse()
            return [self._to_dc(room, row) for row in newest]
        return [self._to_dc(room, row) for row in rows.order_by("seq")]

    def last_seq(self, room: str) -> int:
        """Return the room's counter, which flushing and pruning leave as it is."""
        from ..models import Room

        return Room.objects.filter(name=room).values_list("last_seq", flat=True).first() or 0

    def head(self, room: str) -> tuple[int, str]:
        """Return the room's counter and epoch from its row (``(0, "")`` before it exists)."""
        from ..models import Room

        row = Room.objects.filter(name=room).values_list("last_seq", "epoch").first()
        return (int(row[0]), str(row[1])) if row is not None else (0, "")

    def read(self, room: str, since: int, limit: int | None = None, max_bytes: int | None = None) -> Position:
        """Read the room row and at most ``limit`` messages (``max_bytes``) after ``since`` together."""
        from ..models import Message, Room

        with transaction.atomic():
            # No lock needed: a batch commits its rows with the counter, so the
            # messages read after the row include at least everything it counts.
            row = Room.objects.filter(name=room).values_list("last_seq", "epoch").first()
            if row is None:
                return Position("", 0, [])
            epoch, last = str(row[1]), int(row[0])
            if limit is not None and last - since > limit:
                # More were numbered after ``since`` than may be replayed: the
                # answer is known without reading one of them.
                return Position(epoch, last, [], complete=False)
            rows = Message.objects.filter(room__name=room, seq__gt=since).order_by("seq")
            if limit is not None:
                rows = rows[: limit + 1]  # one more shows that others committed meanwhile
            messages: list[ChannelMessageDC] = []
            size = 0
            # In chunks, so that the byte bound also bounds what is held while reading.
            for message in rows.iterator(chunk_size=100):
                size += message.size
                if (limit is not None and len(messages) >= limit) or (
                    max_bytes is not None and size > max_bytes
                ):
                    return Position(epoch, last, messages, complete=False)
                messages.append(self._to_dc(room, message))
            return Position(epoch, last, messages)

    def page(self, room: str, before: int | None, limit: int) -> list[ChannelMessageDC]:
        """Return up to ``limit`` messages with ``seq < before``, newest first (one indexed query)."""
        from ..models import Message

        rows = Message.objects.filter(room__name=room)
        if before is not None:
            rows = rows.filter(seq__lt=before)
        return [self._to_dc(room, row) for row in rows.order_by("-seq")[: max(limit, 0)]]

    def fetch_all(self) -> dict[str, list[ChannelMessageDC]]:
        """Return every room that has messages, with its messages oldest first."""
        from ..models import Message

        result: dict[str, list[ChannelMessageDC]] = {}
        for row in Message.objects.select_related("room").order_by("room__name", "seq"):
            result.setdefault(row.room.name, []).append(self._to_dc(row.room.name, row))
        return result

    def flush(self, room: str | None = None) -> int:
        """Delete messages and start a new epoch; numbers keep counting, resumes across it are refused."""
        from ..models import Message, Room, new_epoch

        rooms = Room.objects.all() if room is None else Room.objects.filter(name=room)
        with transaction.atomic():
            # One epoch per room: each row gets its own, never a shared one.
            for room_id in rooms.values_list("id", flat=True):
                Room.objects.filter(id=room_id).update(epoch=new_epoch())
            return Message.objects.filter(room__in=rooms).delete()[0]

    def prune(self) -> int:
        """Trim every room to its retention limits, always keeping its newest message."""
        from .retention import prune_rooms

        return prune_rooms()


def bounded(
    messages: list[ChannelMessageDC], limit: int | None, max_bytes: int | None
) -> tuple[list[ChannelMessageDC], bool]:
    """Return the oldest ``messages`` within ``limit`` and ``max_bytes``, and whether that is all."""
    if limit is not None and len(messages) > limit:
        return messages[:limit], False
    if max_bytes is None:
        return messages, True
    size = 0
    for index, message in enumerate(messages):
        _kind, text, data = pack(message.payload)
        size += len(data) if data is not None else len((text or "").encode("utf-8"))
        if size > max_bytes:
            return messages[:index], False
    return messages, True


def get_history_store() -> BaseHistoryStore:
    """Return an instance of the configured ``HISTORY_STORE``."""
    store_class = import_string(get_config()["HISTORY_STORE"])
    return typing.cast(BaseHistoryStore, store_class())
