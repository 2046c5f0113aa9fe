"""How a batch's rows reach the database: few statements, each value prepared by its field.

On SQLite (``test_idempotent_postgres.py`` runs the shared checks on PostgreSQL).
"""

from __future__ import annotations

import math
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from nexios_compat.models import Message
from nexios_compat.stores._numbering import _MESSAGE_COLUMNS
from nexios_compat.stores.history import DatabaseHistoryStore
from tests.support.idem_worker import send

pytestmark = pytest.mark.django_db(transaction=True)


def _per_statement(rows: int) -> int:
    """Rows one statement may carry here: SQLite's limit of bound parameters, as for ``bulk_create``."""
    fields = [Message._meta.get_field(name) for name in _MESSAGE_COLUMNS]
    return int(connection.ops.bulk_batch_size(fields, [None] * rows))


def test_a_batch_goes_as_multi_row_inserts_not_a_statement_per_row() -> None:
    """sqlite3 lets go of the GIL once per statement step: a row per step made a save wait on the loop."""
    per = _per_statement(1000)
    count = 2 * per + 3
    with CaptureQueriesContext(connection) as queries:
        saved = DatabaseHistoryStore().append([send("big", i, None, None) for i in range(count)])
    sqls = [query["sql"] for query in queries.captured_queries]
    inserts = [sql for sql in sqls if "INSERT INTO" in sql and "message" in sql]
    # An executemany is logged once, as "<n> times: INSERT ...".
    assert not any(sql.split(" ", 1)[0].isdigit() for sql in inserts)
    assert len(inserts) == math.ceil(count / per) == 3
    assert [s.seq for s in saved] == list(range(1, count + 1))
    stored = list(Message.objects.filter(room__name="big").order_by("seq").values_list("seq", "text"))
    assert stored == [(i + 1, str(i)) for i in range(count)]


def test_an_id_stored_before_is_a_duplicate_wherever_its_statement_falls() -> None:
    """The rows each statement skipped add up: a retry in any part of a long batch is found."""
    store = DatabaseHistoryStore()
    per = _per_statement(1000)
    store.append([send("r", "early", "anon:s", "m0"), send("r", "late", "anon:s", "m1")])
    batch = [send("r", "early", "anon:s", "m0")]
    batch += [send("r", i, "anon:s", f"n{i}") for i in range(2 * per)]
    batch += [send("r", "late", "anon:s", "m1")]
    saved = store.append(batch)
    assert [(s.seq, s.duplicate) for s in (saved[0], saved[-1])] == [(1, True), (2, True)]
    assert [s.seq for s in saved[1:-1]] == list(range(3, 3 + 2 * per))
    assert Message.objects.filter(room__name="r").count() == 2 + 2 * per


def test_repeating_values_are_prepared_per_value_not_once_per_batch() -> None:
    """Rooms, senders and kinds alternate within a batch: each row keeps its own."""
    senders = [uuid.uuid4(), None, uuid.uuid4()]
    batch = []
    for i in range(12):
        message = send(f"room{i % 2}", i if i % 3 else b"\x00bytes", None, None)
        message.sender = senders[i % 3]
        batch.append(message)
    DatabaseHistoryStore().append(batch)
    rows = Message.objects.order_by("id").values_list("room__name", "sender", "kind", "seq")
    assert list(rows) == [
        (message.room, message.sender, message.kind, i // 2 + 1) for i, message in enumerate(batch)
    ]
