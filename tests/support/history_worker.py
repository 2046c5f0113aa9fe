"""A separate OS process using the history store, for tests on a shared database.

Run with ``DATABASE_URL`` set, from the repository root::

    python -m tests.support.history_worker append --sender 3 --rooms a,b --count 100 --go /tmp/go
    python -m tests.support.history_worker dump

``append`` connects, prints ``{"ready": time}``, waits until the ``--go``
file exists (so that every worker starts writing at once), appends ``count``
messages ``{"sender": N, "i": i}`` in batches of 1 to 4 to rooms picked at
random, and prints JSON lines: ``{"start": time}``, one ``{"room": room,
"i": i, "seq": seq}`` per message, ``{"end": time}``. ``dump`` prints every
room's saved messages as JSON ``{room: [[seq, payload], ...]}``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path


def append(sender: int, rooms: list[str], count: int, go: Path) -> None:
    from django.db import connection

    from nexios_compat.encoding import pack
    from nexios_compat.stores.history import DatabaseHistoryStore, PendingMessage

    store = DatabaseHistoryStore()
    connection.ensure_connection()
    print(json.dumps({"ready": time.time()}), flush=True)
    deadline = time.monotonic() + 60
    while not go.exists():
        if time.monotonic() > deadline:
            sys.exit("the go file never appeared")
        time.sleep(0.005)
    print(json.dumps({"start": time.time()}), flush=True)
    rng = random.Random(sender)
    i = 0
    while i < count:
        batch = []
        for _ in range(min(rng.randint(1, 4), count - i)):
            room = rng.choice(rooms)
            kind, text, data = pack({"sender": sender, "i": i})
            batch.append((room, i, PendingMessage(room=room, kind=kind, text=text, data=data)))
            i += 1
        saved = store.append([message for _, _, message in batch])
        for (room, index, _), record in zip(batch, saved, strict=True):
            print(json.dumps({"room": room, "i": index, "seq": record.seq}), flush=True)
    print(json.dumps({"end": time.time()}), flush=True)


def dump() -> None:
    from nexios_compat.stores.history import DatabaseHistoryStore

    history = DatabaseHistoryStore().fetch_all()
    print(json.dumps({room: [[m.seq, m.payload] for m in messages] for room, messages in history.items()}))


def main() -> None:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    appending = commands.add_parser("append")
    appending.add_argument("--sender", type=int, required=True)
    appending.add_argument("--rooms", required=True)
    appending.add_argument("--count", type=int, required=True)
    appending.add_argument("--go", type=Path, required=True)
    commands.add_parser("dump")
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    import django

    django.setup()
    if args.command == "append":
        append(args.sender, args.rooms.split(","), args.count, args.go)
    else:
        dump()


if __name__ == "__main__":
    main()
