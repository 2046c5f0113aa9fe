"""Room history: pluggable stores, and the async service the rest of the package reads them through."""

from __future__ import annotations

import collections
import dataclasses
import datetime
import logging
import typing
import uuid

from django.db import OperationalError, connection, transaction
from django.db.models import Field
from django.utils import timezone
from django.utils.module_loading import import_string

from ..conf import get_config
from ..encoding import KIND_BYTES, unpack
from ..types import ChannelMessageDC

if typing.TYPE_CHECKING:
    pass

logger = logging.getLogger("nexios_compat.stores.history")


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


class BaseHistoryStore:
    """Where saved messages live; methods are synchronous and run on the ORM thread."""

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

    def read(self, room: str, since: int) -> Position:
        """Return the room's epoch and counter with its messages after ``since``, read together."""
        return Position("", self.last_seq(room), self.fetch(room, since))

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

    def append(self, messages: list[PendingMessage]) -> list[SavedMessage]:
        """Store messages in one transaction; each room's numbers come from one ``UPDATE … RETURNING``."""
        from ..models import Room

        try:
            return self._append_numbered(messages)
        except _RoomsMissing as missing:
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
        except _RoomsMissing as missing:
            Room.objects.bulk_create([Room(name=name) for name in missing.names], ignore_conflicts=True)
        return self._append_available(messages, lock_timeout)

    def _append_available(self, messages: list[PendingMessage], lock_timeout: float) -> Appended:
        counts = collections.Counter(message.room for message in messages)
        now = timezone.now()
        with transaction.atomic():
            # One statement numbers every room whose row is free (a round trip
            # matters: on a distant database each one holds the rows longer).
            numbered = _take_free_numbers(counts, now)
            rest = [name for name in sorted(counts) if name not in numbered]
            busy = _lock_rooms(rest, lock_timeout) if rest else set()
            for name in rest:
                if name not in busy:
                    row = _take_numbers(name, counts[name], now)
                    if row is None:
                        raise _RoomsMissing([name])
                    numbered[name] = row
            kept = [message for message in messages if message.room not in busy]
            saved = self._insert(kept, numbered, now) if kept else []
        return Appended(saved, frozenset(busy))

    def _append_numbered(self, messages: list[PendingMessage]) -> list[SavedMessage]:
        with transaction.atomic():
            return self._number(messages)

    def _number(self, messages: list[PendingMessage]) -> list[SavedMessage]:
        """Number and insert messages; the caller's transaction must be open."""
        counts = collections.Counter(message.room for message in messages)
        now = timezone.now()
        # Rooms in one global order, so that concurrent batches never deadlock.
        numbered = {name: _take_numbers(name, counts[name], now) for name in sorted(counts)}
        missing = [name for name, row in numbered.items() if row is None]
        if missing:
            raise _RoomsMissing(missing)  # rolls back the numbers already taken
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
        _insert_messages(rows)
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

    def read(self, room: str, since: int) -> Position:
        """Read the room row and the messages after ``since`` in one transaction."""
        from ..models import Room

        with transaction.atomic():
            # No lock needed: a batch commits its rows with the counter, so the
            # messages read after the row include at least everything it counts.
            row = Room.objects.filter(name=room).values_list("last_seq", "epoch").first()
            if row is None:
                return Position("", 0, [])
            return Position(row[1], int(row[0]), self.fetch(room, since))

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


class _RoomsMissing(Exception):
    def __init__(self, names: list[str]) -> None:
        super().__init__(names)
        self.names = names


def _insert_messages(rows: list[tuple[int, SavedMessage, PendingMessage]]) -> None:
    """Insert message rows with one ``executemany``.

    ``bulk_create`` built a model instance per message and compiled a
    statement per batch: a third of a save's time on the database thread.
    Values go through the fields' own database preparation, as the ORM does.
    """
    from ..models import Message

    fields = [typing.cast(Field, Message._meta.get_field(name)) for name in _MESSAGE_COLUMNS]
    table = connection.ops.quote_name(Message._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(str(field.column)) for field in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    prep = [field.get_db_prep_save for field in fields]
    params = []
    for room_id, record, message in rows:
        values = (
            room_id,
            record.seq,
            record.uuid,
            message.kind,
            message.text,
            message.data,
            payload_size(message),
            message.sender,
            record.created,
        )
        params.append([prepare(value, connection) for prepare, value in zip(prep, values, strict=True)])
    with connection.cursor() as cursor:
        cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES ({placeholders})", params)


_MESSAGE_COLUMNS = ("room", "seq", "uuid", "kind", "text", "data", "size", "sender", "created")


def _take_numbers(room: str, count: int, now: datetime.datetime) -> tuple[int, int, str] | None:
    """Advance a room's counter by ``count`` (locking its row); return ``(room id, new last_seq, epoch)``."""
    from ..models import Room

    table = connection.ops.quote_name(Room._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET last_seq = last_seq + %s, last_activity = %s WHERE name = %s "
            "RETURNING id, last_seq, epoch",
            [count, connection.ops.adapt_datetimefield_value(now), room],
        )
        row = cursor.fetchone()
    return (int(row[0]), int(row[1]), str(row[2])) if row is not None else None


def _take_free_numbers(
    counts: typing.Mapping[str, int], now: datetime.datetime
) -> dict[str, tuple[int, int, str]]:
    """Advance the counters of the rooms whose rows no one holds, in one statement.

    Return ``{room: (id, new last_seq, epoch)}`` for those; a room missing from
    it is busy (another transaction holds its row) or does not exist yet.
    ``SKIP LOCKED`` never waits, so this cannot deadlock with another batch.
    """
    from ..models import Room

    table = connection.ops.quote_name(Room._meta.db_table)
    names = sorted(counts)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} AS r SET last_seq = r.last_seq + c.n, last_activity = %s "
            "FROM (SELECT unnest(%s::text[]) AS name, unnest(%s::bigint[]) AS n) AS c "
            f"WHERE r.name = c.name AND r.id IN (SELECT id FROM {table} WHERE name = ANY(%s) "
            "ORDER BY name FOR UPDATE SKIP LOCKED) RETURNING r.name, r.id, r.last_seq, r.epoch",
            [connection.ops.adapt_datetimefield_value(now), names, [counts[n] for n in names], names],
        )
        return {str(row[0]): (int(row[1]), int(row[2]), str(row[3])) for row in cursor.fetchall()}


def _lock_rooms(rest: list[str], lock_timeout: float) -> set[str]:
    """Lock the rows ``_take_free_numbers`` skipped; return those another transaction keeps busy.

    A busy row is usually another writer's short batch, so each one gets
    ``lock_timeout`` to come free, in a savepoint that a lock timeout alone
    rolls back. Waiting while holding other rows cannot deadlock for long:
    ``lock_timeout`` ends the wait before PostgreSQL's deadlock detector would.
    """
    from ..models import Room

    table = connection.ops.quote_name(Room._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT name FROM {table} WHERE name = ANY(%s)", [rest])
        existing = {row[0] for row in cursor.fetchall()}
        if len(existing) < len(rest):
            raise _RoomsMissing([name for name in rest if name not in existing])
        cursor.execute("SELECT set_config('lock_timeout', %s, true)", [f"{max(int(lock_timeout * 1000), 1)}"])
        busy = set()
        for name in rest:
            try:
                with transaction.atomic():
                    cursor.execute(f"SELECT 1 FROM {table} WHERE name = %s FOR UPDATE", [name])
                    found = cursor.fetchone() is not None
            except OperationalError as exc:
                if getattr(exc.__cause__, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                    raise
                busy.add(name)
                continue
            if not found:
                raise _RoomsMissing([name])  # deleted while we waited for it
        cursor.execute("SELECT set_config('lock_timeout', '0', true)")
    return busy


# PostgreSQL's SQLSTATE for a lock wait ended by ``lock_timeout``.
LOCK_NOT_AVAILABLE = "55P03"


def payload_size(message: PendingMessage) -> int:
    """Return a payload's size in bytes: the bytes, or the UTF-8 of the text or JSON."""
    if message.kind == KIND_BYTES:
        return len(message.data or b"")
    return len((message.text or "").encode("utf-8"))


def get_history_store() -> BaseHistoryStore:
    """Return an instance of the configured ``HISTORY_STORE``."""
    store_class = import_string(get_config()["HISTORY_STORE"])
    return typing.cast(BaseHistoryStore, store_class())
