"""The SQL under ``DatabaseHistoryStore``: seq numbers per room in one statement, rows in one insert."""

from __future__ import annotations

import datetime
import typing
from collections.abc import Callable

from django.db import DEFAULT_DB_ALIAS, OperationalError, connection, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field

from .records import PendingMessage, SavedMessage, payload_size

# Per room: its row's id, its counter after the advance, its epoch.
Numbered = dict[str, tuple[int, int, str]]


class RoomsMissing(Exception):
    """Rooms a batch names that have no row yet: create them and try again."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(names)
        self.names = names


class KnownElsewhere(Exception):
    """A client id the batch did not know was stored meanwhile: look them up and number again."""


def insert_messages(rows: list[tuple[int, SavedMessage, PendingMessage]]) -> None:
    """Insert message rows with multi-row ``INSERT``s; raise ``KnownElsewhere`` if a client id was taken.

    ``bulk_create`` built a model instance per message and compiled a
    statement per batch: a third of a save's time on the database thread.
    Values go through the fields' own database preparation, as the ORM does,
    with the connection itself rather than its thread-local proxy (a lookup
    per value was most of a save's time), and once per distinct value in the
    columns whose values repeat across rows (room, kind, sender, time).
    Rows go as few statements as the backend's parameter limit allows, not
    one ``executemany``: sqlite3 steps (and lets go of the GIL, then waits
    to take it back from the event loop) once per statement, so per row there.
    A row whose client id another transaction committed since the batch
    looked is skipped by ``ON CONFLICT`` (never an error that would end the
    transaction); the numbers are then wrong, so the caller rolls back.
    """
    from ..models import Message

    fields = [typing.cast(Field, Message._meta.get_field(name)) for name in _MESSAGE_COLUMNS]
    table = connection.ops.quote_name(Message._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(str(field.column)) for field in fields)
    row_sql = "(" + ", ".join(["%s"] * len(fields)) + ")"
    db = connections[DEFAULT_DB_ALIAS]
    prep = [_preparer(field, db, field.name in _REPEATING) for field in fields]
    params: list[typing.Any] = []
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
            message.client_id if message.idempotency_key else None,
            message.sender_key,
        )
        params.extend(prepare(value) for prepare, value in zip(prep, values, strict=True))
    # The partial unique index's own columns and predicate: both PostgreSQL and
    # SQLite infer that index from them, so no other constraint is ever skipped.
    target = ", ".join(
        connection.ops.quote_name(str(typing.cast(Field, Message._meta.get_field(name)).column))
        for name in ("room", "sender_key", "client_id")
    )
    conflict = f"ON CONFLICT ({target}) WHERE {connection.ops.quote_name('client_id')} IS NOT NULL DO NOTHING"
    per_statement = _rows_per_statement(db, fields, len(rows))
    width = len(fields)
    inserted = 0
    with connection.cursor() as cursor:
        for start in range(0, len(rows), per_statement):
            count = min(per_statement, len(rows) - start)
            sql = f"INSERT INTO {table} ({columns}) VALUES {', '.join([row_sql] * count)} {conflict}"
            cursor.execute(sql, params[start * width : (start + count) * width])
            # A row skipped by ON CONFLICT counts none.
            inserted += cursor.rowcount
    if any(message.idempotency_key for _, _, message in rows) and inserted != len(rows):
        raise KnownElsewhere()


def _rows_per_statement(db: BaseDatabaseWrapper, fields: list[Field], rows: int) -> int:
    """Rows one ``INSERT`` may carry: the backend's batch size, within the wire protocol's parameter limit."""
    return max(1, min(db.ops.bulk_batch_size(fields, [None] * rows), MAX_PARAMETERS // len(fields)))


# PostgreSQL's protocol counts a statement's parameters in 16 bits (SQLite's limit is lower).
MAX_PARAMETERS = 65_535


_MESSAGE_COLUMNS = (
    "room",
    "seq",
    "uuid",
    "kind",
    "text",
    "data",
    "size",
    "sender",
    "created",
    "client_id",
    "sender_key",
)
# Columns whose values repeat across a batch's rows (one room, one sender, one time).
_REPEATING = frozenset({"room", "kind", "sender", "created", "sender_key"})


def _preparer(field: Field, db: BaseDatabaseWrapper, repeating: bool) -> Callable[[typing.Any], typing.Any]:
    """Return ``field``'s database preparation of a value for ``db``; with ``repeating``, memoized."""
    prepare = field.get_db_prep_save
    if not repeating:
        return lambda value: prepare(value, db)
    memo: dict[typing.Any, typing.Any] = {}

    def cached(value: typing.Any) -> typing.Any:
        try:
            return memo[value]
        except KeyError:
            prepared = memo[value] = prepare(value, db)
            return prepared

    return cached


def known_messages(
    keys: typing.Collection[tuple[str, str, str]],
) -> dict[tuple[str, str, str], SavedMessage]:
    """Return what the store already assigned to messages with these ``(room, sender_key, client_id)``."""
    from ..models import Message

    rows = Message.objects.filter(
        room__name__in={room for room, _, _ in keys},
        client_id__in={client_id for _, _, client_id in keys},
        sender_key__in={sender for _, sender, _ in keys},
    ).values_list("room__name", "sender_key", "client_id", "seq", "uuid", "created", "room__epoch")
    known = {}
    for room, sender_key, client_id, seq, uid, created, epoch in rows:
        key = (str(room), str(sender_key), str(client_id))
        if key in keys:
            known[key] = SavedMessage(int(seq), uid, created, str(epoch), duplicate=True)
    return known


def take_numbers(room: str, count: int, now: datetime.datetime) -> tuple[int, int, str] | None:
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


def _advance(
    cursor: typing.Any, counts: typing.Mapping[str, int], now: datetime.datetime, lock: str
) -> Numbered:
    """Advance the counters of ``counts``' rooms whose rows ``lock`` (a ``FOR UPDATE`` clause) takes."""
    from ..models import Room

    table = connection.ops.quote_name(Room._meta.db_table)
    names = sorted(counts)
    cursor.execute(
        f"UPDATE {table} AS r SET last_seq = r.last_seq + c.n, last_activity = %s "
        "FROM (SELECT unnest(%s::text[]) AS name, unnest(%s::bigint[]) AS n) AS c "
        f"WHERE r.name = c.name AND r.id IN (SELECT id FROM {table} WHERE name = ANY(%s) "
        f"ORDER BY name {lock}) RETURNING r.name, r.id, r.last_seq, r.epoch",
        [connection.ops.adapt_datetimefield_value(now), names, [counts[n] for n in names], names],
    )
    return {str(row[0]): (int(row[1]), int(row[2]), str(row[3])) for row in cursor.fetchall()}


def take_free_numbers(counts: typing.Mapping[str, int], now: datetime.datetime) -> Numbered:
    """Advance the counters of the rooms whose rows no one holds, in one statement.

    Return ``{room: (id, new last_seq, epoch)}`` for those; a room missing from
    it is busy (another transaction holds its row) or does not exist yet.
    ``SKIP LOCKED`` never waits, so this cannot deadlock with another batch.
    """
    with connection.cursor() as cursor:
        return _advance(cursor, counts, now, "FOR UPDATE SKIP LOCKED")


def take_numbers_in_order(
    counts: typing.Mapping[str, int], now: datetime.datetime, lock_timeout: float
) -> Numbered | None:
    """Advance every room's counter, waiting up to ``lock_timeout`` for rows another writer holds.

    The rows are locked in name order, as every writer locks them, so two
    writers of the same rooms (two processes) queue behind each other for the
    few milliseconds of a batch and never deadlock. Return ``None`` when a row
    stayed busy past ``lock_timeout`` (an admin's ``SELECT … FOR UPDATE``, a
    long ``atomic()``): nothing was taken, and the caller numbers the free rooms
    alone. Rooms without a row are missing from the result.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('lock_timeout', %s, true)", [f"{max(int(lock_timeout * 1000), 1)}"])
        try:
            with transaction.atomic():
                return _advance(cursor, counts, now, "FOR UPDATE")
        except OperationalError as exc:
            if getattr(exc.__cause__, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                raise
            return None
        finally:
            cursor.execute("SELECT set_config('lock_timeout', '0', true)")


def lock_rooms(rest: list[str], lock_timeout: float) -> set[str]:
    """Lock the rows ``take_free_numbers`` skipped; return those another transaction keeps busy.

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
            raise RoomsMissing([name for name in rest if name not in existing])
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
                raise RoomsMissing([name])  # deleted while we waited for it
        cursor.execute("SELECT set_config('lock_timeout', '0', true)")
    return busy


# PostgreSQL's SQLSTATE for a lock wait ended by ``lock_timeout``.
LOCK_NOT_AVAILABLE = "55P03"
