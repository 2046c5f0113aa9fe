"""rooms.js keeps the order typed through a database outage: a failed send is not overtaken by the next.

A real daphne on PostgreSQL serves ``/ids/{room}/`` (tests/sites/probe/asgi.py);
``rooms.js``'s ``RoomClient``, run under Node (tests/support/rooms_client.mjs),
types messages into it. Midway the test locks the message table, so saves time
out (``HISTORY_WRITE_TIMEOUT`` 1 s): the first send accepted then fails and its
sender is told with the ids. The lock is released at once, while the client has
more messages on their way. The socket's later sends must not be stored ahead of
the failed one, which the client sends again: in the end every message typed is
stored exactly once, in the order typed.
"""

from __future__ import annotations

import typing

import psycopg
import pytest

from devservers import DaphneServer
from tests.support.cluster import Database, cluster_env, migrate
from tests.support.helpers import room_name
from tests.support.rooms_client import NodeClient

pytestmark = pytest.mark.timeout(120)

SETTINGS = {"HISTORY_WRITE_TIMEOUT": 1.0, "HISTORY_STATEMENT_TIMEOUT": 0.3}


def test_a_send_that_failed_in_an_outage_is_not_overtaken_by_the_next(
    redis_url: str, postgres_url: str, daphne_factory: typing.Any
) -> None:
    env = cluster_env(redis_url, postgres_url, SETTINGS)
    migrate(env)
    server: DaphneServer = daphne_factory(env=env, app="tests.sites.probe.asgi:application")
    room = room_name("outage")
    db = Database(postgres_url)
    client = NodeClient(server.url, f"/ids/{room}/")
    try:
        client.wait_for("open")
        client.type(5)
        for _ in range(5):
            client.wait_for("ack")
        with psycopg.connect(postgres_url) as lock:
            lock.execute("LOCK TABLE nexios_compat_message IN ACCESS EXCLUSIVE MODE")
            client.type(6)  # the first is accepted, then fails; the others wait behind it
            failed = client.wait_for("unavailable")
            assert failed["ids"], failed
        # The database is back while sends of this socket are still on their way.
        client.type(6)
        client.tell("finish")
        done = client.wait_for("done", timeout=60)
    finally:
        client.stop()
    typed = [f"m{n:03}" for n in range(done["typed"])]
    stored = [payload["text"] for _, payload in db.history(room)]
    db.close()
    assert stored == typed
    unavailable = [event for event in client.seen if event["event"] == "unavailable"]
    assert unavailable, "the outage failed no send: the test did not test anything"
