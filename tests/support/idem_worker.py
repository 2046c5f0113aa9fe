"""Checks of idempotent sends against a history store, run in process (SQLite) and on PostgreSQL.

``CHECKS`` each take a store on an empty database. Run as a script with
``DATABASE_URL`` set (``python -m tests.support.idem_worker``), it runs them all
and then races threads, each on its own connection, that store the same client
ids in the same rooms at the same moment; it prints one JSON line: the failed
checks and, per room raced, the rows stored and the seqs each thread was given.
"""

from __future__ import annotations

import json
import threading
import traceback
import typing
from collections.abc import Callable

from nexios_compat.encoding import pack
from nexios_compat.stores.history import BaseHistoryStore, PendingMessage

Check = Callable[[BaseHistoryStore], None]


def send(room: str, payload: object, sender_key: str | None, client_id: str | None) -> PendingMessage:
    """A pending message from ``sender_key`` with a client id (or none)."""
    kind, text, data = pack(payload)
    return PendingMessage(room, kind, text, data, client_id=client_id, sender_key=sender_key)


def _rows(room: str) -> list[tuple[int, object]]:
    from nexios_compat.models import Message

    return [(m.seq, m.payload) for m in Message.objects.filter(room__name=room).order_by("seq")]


def _counter(room: str) -> int:
    from nexios_compat.models import Room

    return Room.objects.filter(name=room).values_list("last_seq", flat=True).first() or 0


def check_a_retry_answers_with_the_first_seq_and_burns_none(store: BaseHistoryStore) -> None:
    first = store.append([send("a", "one", "anon:s", "m1"), send("a", "two", "anon:s", "m2")])
    again = store.append([send("a", "two", "anon:s", "m2")])
    assert [s.duplicate for s in first] == [False, False]
    assert again[0].duplicate and (again[0].seq, again[0].uuid, again[0].epoch) == (
        first[1].seq,
        first[1].uuid,
        first[1].epoch,
    )
    after = store.append([send("a", "three", "anon:s", "m3")])
    assert after[0].seq == 3 and _counter("a") == 3
    assert _rows("a") == [(1, "one"), (2, "two"), (3, "three")]


def check_the_same_id_twice_in_one_batch_is_stored_once(store: BaseHistoryStore) -> None:
    saved = store.append(
        [send("b", "x", "user:7", "m1"), send("b", "x", "user:7", "m1"), send("b", "y", None, None)]
    )
    assert [(s.seq, s.duplicate) for s in saved] == [(1, False), (1, True), (2, False)]
    assert _rows("b") == [(1, "x"), (2, "y")] and _counter("b") == 2


def check_ids_are_per_sender_and_per_room(store: BaseHistoryStore) -> None:
    saved = store.append(
        [send("c", "u1", "user:1", "m1"), send("c", "u2", "user:2", "m1"), send("d", "u1d", "user:1", "m1")]
    )
    assert [(s.seq, s.duplicate) for s in saved] == [(1, False), (2, False), (1, False)]
    assert _rows("c") == [(1, "u1"), (2, "u2")] and _rows("d") == [(1, "u1d")]


def check_sends_without_an_id_are_never_deduplicated(store: BaseHistoryStore) -> None:
    saved = store.append([send("e", "same", "anon:s", None), send("e", "same", "anon:s", None)])
    saved += store.append([send("e", "same", None, None)])
    assert [(s.seq, s.duplicate) for s in saved] == [(1, False), (2, False), (3, False)]


def check_a_retry_among_new_messages_keeps_the_numbers_gapless(store: BaseHistoryStore) -> None:
    store.append([send("f", "one", "anon:s", "m1")])
    saved = store.append(
        [
            send("f", "two", "anon:s", "m2"),
            send("f", "one", "anon:s", "m1"),
            send("g", "g1", "anon:s", "m1"),
            send("f", "three", "anon:s", "m3"),
        ]
    )
    assert [(s.seq, s.duplicate) for s in saved] == [(2, False), (1, True), (1, False), (3, False)]
    assert _rows("f") == [(1, "one"), (2, "two"), (3, "three")] and _counter("f") == 3


def check_append_available_dedupes_as_append_does(store: BaseHistoryStore) -> None:
    store.append_available([send("h", "one", "anon:s", "m1")], 0.1)
    appended = store.append_available(
        [send("h", "one", "anon:s", "m1"), send("h", "two", "anon:s", "m2")], 0.1
    )
    assert [(s.seq, s.duplicate) for s in appended.saved] == [(1, True), (2, False)]
    assert _rows("h") == [(1, "one"), (2, "two")] and _counter("h") == 2


def check_a_flushed_message_is_no_longer_known(store: BaseHistoryStore) -> None:
    first = store.append([send("i", "one", "anon:s", "m1")])
    store.flush("i")
    again = store.append([send("i", "one", "anon:s", "m1")])
    # History no longer has it: the window ended with it, so it is stored again, in the new epoch.
    assert not again[0].duplicate and again[0].seq == 2 and again[0].epoch != first[0].epoch


CHECKS: list[Check] = [
    check_a_retry_answers_with_the_first_seq_and_burns_none,
    check_the_same_id_twice_in_one_batch_is_stored_once,
    check_ids_are_per_sender_and_per_room,
    check_sends_without_an_id_are_never_deduplicated,
    check_a_retry_among_new_messages_keeps_the_numbers_gapless,
    check_append_available_dedupes_as_append_does,
    check_a_flushed_message_is_no_longer_known,
]


def race(rooms: int, threads: int, ids: int) -> dict[str, typing.Any]:
    """Let ``threads`` store the same ``ids`` client ids in each room at once; return what each got."""
    from django.db import connection

    from nexios_compat.stores.history import DatabaseHistoryStore

    results: dict[str, list[list[int]]] = {}
    errors: list[str] = []
    for index in range(rooms):
        room = f"race-{index}"
        barrier = threading.Barrier(threads)
        got: list[list[int]] = []

        def run(worker: int, room: str = room, barrier: threading.Barrier = barrier, got: list = got) -> None:
            try:
                store = DatabaseHistoryStore()
                connection.ensure_connection()
                # Some threads by the fast path, some by the one that sets rooms aside.
                messages = [send(room, f"m{i}", "anon:racer", f"m{i}") for i in range(ids)]
                barrier.wait(10)
                saved = store.append_available(messages, 0.5).saved if worker % 2 else store.append(messages)
                got.append([s.seq for s in saved])
            except Exception:
                errors.append(traceback.format_exc())
            finally:
                connection.close()

        workers = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join(60)
        results[room] = got
    rows = {room: [seq for seq, _ in _rows(room)] for room in results}
    counters = {room: _counter(room) for room in results}
    return {"got": results, "rows": rows, "counters": counters, "errors": errors}


def main() -> None:
    import django

    django.setup()
    from nexios_compat.stores.history import DatabaseHistoryStore

    failed = {}
    for check in CHECKS:
        try:
            check(DatabaseHistoryStore())
        except Exception:
            failed[check.__name__] = traceback.format_exc()
    print(json.dumps({"failed": failed, **race(rooms=15, threads=4, ids=5)}))


if __name__ == "__main__":
    main()
