"""A PostgreSQL outage under a real daphne: sockets stay open, rows follow the sockets, metrics move.

One daphne (``tests.sites.multiprocess.asgi``) on PostgreSQL and Redis; the session's
PostgreSQL server is stopped for the outage and started again on its port.
"""

from __future__ import annotations

import asyncio
import json
import typing
import urllib.error
import urllib.request

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from devservers import DaphneServer, PostgresServer
from tests.support.cluster import Member, PresenceView, cluster_env, migrate
from tests.support.helpers import room_name, until

pytestmark = pytest.mark.timeout(180)

APP = "tests.sites.multiprocess.asgi:application"
UNAVAILABLE = {"type": "error", "error": "history_unavailable"}


def _get(server: DaphneServer, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"{server.url}{path}", timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def get(server: DaphneServer, path: str) -> tuple[int, str]:
    return await asyncio.to_thread(_get, server, path)


async def scrape(server: DaphneServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the server's /metrics, by name and sorted labels."""
    status, text = await get(server, "/metrics")
    assert status == 200, text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def usernames(url: str, room: str) -> list[str]:
    """Usernames of the room's membership rows."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT m.metadata->>'username' FROM nexios_compat_member m "
            "JOIN nexios_compat_room r ON r.id = m.room_id WHERE r.name = %s",
            (room,),
        ).fetchall()
    return sorted(row[0] for row in rows)


def said(frames: list[typing.Any], text: str) -> bool:
    return any(isinstance(f, dict) and f.get("message") == text for f in frames)


async def test_a_postgres_outage_closes_no_socket_and_leaves_no_ghost_member(
    redis_url: str, postgres_url: str, postgres_server: PostgresServer, daphne_factory: typing.Any
) -> None:
    env = cluster_env(
        redis_url,
        postgres_url,
        {"HEARTBEAT_INTERVAL": 0.3, "PROCESS_TIMEOUT": 60.0, "HISTORY_WRITE_TIMEOUT": 1.0},
    )
    migrate(env)
    server = daphne_factory(env=env, app=APP)
    room = room_name("outage")
    path = f"/ws/chat/{room}/?username="
    stays = await Member.open(server, path + "stays", "stays")
    await stays.wait(lambda f: said(f, "stays joined"), "its join notice")
    leaves = await Member.open(server, path + "leaves", "leaves")
    await stays.wait(lambda f: said(f, "leaves joined"), "the second join notice")
    assert await asyncio.to_thread(usernames, postgres_url, room) == ["leaves", "stays"]
    before = await scrape(server)

    postgres_server.stop()
    try:
        await leaves.close()  # its "left" notice and its row both fail: the row is owed
        await stays.send({"type": "message", "content": "during"})
        await stays.wait(lambda f: UNAVAILABLE in f, "the history_unavailable error frame")
        newcomer = await Member.open(server, path + "newcomer", "newcomer")  # handshakes still work
        await newcomer.wait(lambda f: UNAVAILABLE in f, "its join notice failing, not its socket")
        # Live presence comes from memory: the leave and the join reach the room all the same.
        await stays.wait(
            lambda f: set(PresenceView().apply(f).keys()) == {"stays", "newcomer"},
            "presence without the database",
        )
        assert PresenceView().apply(stays.frames).errors == []
        during = await scrape(server)
        assert value(during, "nexios_compat_membership_dirty") == 1
        assert value(during, "nexios_compat_members") == 2  # the closed socket left memory
        assert value(during, "nexios_compat_database_failures_total", op="presence_remove") > value(
            before, "nexios_compat_database_failures_total", op="presence_remove"
        )
        assert value(during, "nexios_compat_history_unavailable_total") >= 2
        # Ready all the same: the sockets serve through the outage (every process sees
        # the same database, a 503 would eject them all); the body says what is down.
        status, body = await get(server, "/health")
        assert status == 200 and json.loads(body)["database"] == "down", body
    finally:
        postgres_server.start()

    await until(
        lambda: asyncio.to_thread(lambda: usernames(postgres_url, room) == ["newcomer", "stays"]),
        "the rows of the live sockets only",
        timeout=30,
    )
    await stays.send({"type": "message", "content": "after"})
    await newcomer.wait(lambda f: said(f, "after"), "a saved message after the outage")
    after = await scrape(server)
    assert value(after, "nexios_compat_recoveries_total", part="history_writer") >= 1
    assert value(after, "nexios_compat_recoveries_total", part="membership") >= 1
    assert value(after, "nexios_compat_members_reconciled_total", action="removed") >= 1
    assert value(after, "nexios_compat_members_reconciled_total", action="added") >= 1
    saved = "nexios_compat_history_saved_total"
    assert value(after, saved) > value(before, saved)
    status, body = await get(server, "/health")
    assert status == 200, body
    assert not stays.closed and not newcomer.closed
    await stays.close()
    await newcomer.close()
