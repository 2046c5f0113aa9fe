"""A history batch waits for busy room rows in name order, holding no row after the one it waits for.

Run as a script with ``DATABASE_URL`` set to a migrated PostgreSQL database
(``python -m tests.support.lock_order_worker``). A plain connection holds room
``a``'s row (as another process's writer does for the few milliseconds of its
batch); a batch for rooms ``a`` and ``b`` waits for it. While it waits, a third
connection tries to lock ``b`` without waiting: a writer that locked ``b``
first and then waited for ``a`` could deadlock with a writer doing the
opposite. Then ``a`` is let go and the batch commits both rooms. Prints one
JSON line: whether ``b`` was free during the wait, the rooms set aside, the seqs.
"""

from __future__ import annotations

import json
import os
import threading
import time

import psycopg


def main() -> None:
    import django

    django.setup()
    from nexios_compat.encoding import pack
    from nexios_compat.models import Room
    from nexios_compat.stores.history import Appended, DatabaseHistoryStore, PendingMessage

    url = os.environ["DATABASE_URL"]
    for name in ("a", "b"):
        Room.objects.get_or_create(name=name)
    store = DatabaseHistoryStore()
    result: dict[str, Appended] = {}

    def batch() -> None:
        from django.db import connection

        messages = [PendingMessage(room, *pack(f"to {room}")) for room in ("b", "a")]
        result["appended"] = store.append_available(messages, lock_timeout=30.0)
        connection.close()

    with psycopg.connect(url) as holder, psycopg.connect(url, autocommit=True) as watcher:
        holder.execute("SELECT 1 FROM nexios_compat_room WHERE name = 'a' FOR UPDATE")
        writer = threading.Thread(target=batch)
        writer.start()
        deadline = time.monotonic() + 30
        while not watcher.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        ).fetchone()[0]:  # type: ignore[index]
            assert time.monotonic() < deadline, "the batch never waited for the held row"
            time.sleep(0.01)  # polling the server's own view of the wait, not guessing at it
        with psycopg.connect(url) as other:
            try:
                other.execute("SELECT 1 FROM nexios_compat_room WHERE name = 'b' FOR UPDATE NOWAIT")
                b_free = True
            except psycopg.errors.LockNotAvailable:
                b_free = False
            other.rollback()
        holder.rollback()
        writer.join(30)
    appended = result["appended"]
    print(
        json.dumps(
            {
                "b_free_while_waiting": b_free,
                "busy": sorted(appended.busy),
                "seqs": [s.seq for s in appended.saved],
            }
        )
    )


if __name__ == "__main__":
    main()
