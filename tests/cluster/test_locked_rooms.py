"""A room whose row another transaction holds delays only its own saves, under a real daphne on PostgreSQL.

The lock is held by a plain ``psycopg`` connection (as an admin's ``SELECT …
FOR UPDATE`` would); every assertion about "while the lock is held" is made
before that connection lets go, so it holds by the order of events, not by time.
"""

from __future__ import annotations

import asyncio
import json
import typing

import psycopg
import pytest

from tests.support.cluster import Member, chats, cluster_env, migrate
from tests.support.helpers import room_name

pytestmark = pytest.mark.timeout(180)

APP = "tests.sites.multiprocess.asgi:application"
UNAVAILABLE = {"type": "error", "error": "history_unavailable"}


def saved(url: str, room: str) -> list[tuple[int, str]]:
    """``(seq, message)`` of a room's committed rows, as another connection sees them."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT m.seq, m.text FROM nexios_compat_message m "
            "JOIN nexios_compat_room r ON r.id = m.room_id WHERE r.name = %s ORDER BY m.seq",
            (room,),
        ).fetchall()
    return [(int(seq), json.loads(text)["message"]) for seq, text in rows]


def said(frames: list[typing.Any], text: str) -> bool:
    return any(isinstance(f, dict) and f.get("message") == text for f in frames)


def lock_row(blocker: psycopg.Connection[typing.Any], room: str) -> None:
    row = blocker.execute("SELECT 1 FROM nexios_compat_room WHERE name = %s FOR UPDATE", (room,)).fetchone()
    assert row is not None


async def test_saves_in_other_rooms_commit_and_arrive_while_one_rooms_row_is_locked(
    redis_url: str, postgres_url: str, daphne_factory: typing.Any
) -> None:
    env = cluster_env(redis_url, postgres_url, {"HISTORY_WRITE_TIMEOUT": 60.0, "PROCESS_TIMEOUT": 60.0})
    migrate(env)
    server = daphne_factory(env=env, app=APP)
    locked, other = room_name("locked"), room_name("other")
    stays = await Member.open(server, f"/ws/chat/{locked}/?username=stays&envelope=1", "stays")
    await stays.wait(lambda f: len(stays.seqs()) == 1, "its join notice")
    talker = await Member.open(server, f"/ws/chat/{other}/?username=talker", "talker")
    await talker.wait(lambda f: said(f, "talker joined"), "its join notice")
    with psycopg.connect(postgres_url) as blocker:  # a transaction holding one room's row
        lock_row(blocker, locked)
        for n in range(3):
            await stays.send({"type": "message", "content": f"behind {n}"})
        await talker.send({"type": "message", "content": "while locked"})
        await talker.wait(lambda f: said(f, "while locked"), "its message while the other row is locked")
        assert (2, "while locked") in await asyncio.to_thread(saved, postgres_url, other)
        newcomer = await Member.open(server, f"/ws/chat/{other}/?username=newcomer", "newcomer")
        await newcomer.wait(lambda f: said(f, "newcomer joined"), "a join notice saved while locked")
        assert chats(stays.frames) == []
        assert await asyncio.to_thread(saved, postgres_url, locked) == [(1, "stays joined")]
        blocker.rollback()
    await stays.wait(lambda f: len(chats(f)) == 3, "the held messages once the lock is gone")
    assert chats(stays.frames) == [(2, "behind 0"), (3, "behind 1"), (4, "behind 2")]
    assert [seq for seq, _ in await asyncio.to_thread(saved, postgres_url, locked)] == [1, 2, 3, 4]
    assert not stays.closed and not talker.closed and not newcomer.closed
    for member in (stays, talker, newcomer):
        await member.close()


async def test_a_row_locked_past_the_write_timeout_fails_only_its_rooms_saves(
    redis_url: str, postgres_url: str, daphne_factory: typing.Any
) -> None:
    env = cluster_env(redis_url, postgres_url, {"HISTORY_WRITE_TIMEOUT": 3.0, "PROCESS_TIMEOUT": 60.0})
    migrate(env)
    server = daphne_factory(env=env, app=APP)
    locked, other = room_name("locked"), room_name("other")
    stays = await Member.open(server, f"/ws/chat/{locked}/?username=stays", "stays")
    await stays.wait(lambda f: said(f, "stays joined"), "its join notice")
    talker = await Member.open(server, f"/ws/chat/{other}/?username=talker", "talker")
    await talker.wait(lambda f: said(f, "talker joined"), "its join notice")
    with psycopg.connect(postgres_url) as blocker:
        lock_row(blocker, locked)
        await stays.send({"type": "message", "content": "lost"})
        await talker.send({"type": "message", "content": "fine"})
        await talker.wait(lambda f: said(f, "fine"), "a message in the other room while the row is locked")
        # Sent after "lost", delivered before "lost" failed: it did not wait behind the locked room.
        assert UNAVAILABLE not in stays.frames
        await stays.wait(lambda f: UNAVAILABLE in f, "the history_unavailable error frame", timeout=30)
        await stays.send({"type": "message", "content": "lost too"})  # waits for its outcome: fails too
        await stays.wait(lambda f: f.count(UNAVAILABLE) == 2, "a second error frame", timeout=30)
        blocker.rollback()
    assert UNAVAILABLE not in talker.frames
    await stays.send({"type": "message", "content": "after"})
    await stays.wait(lambda f: said(f, "after"), "a saved message once the lock is gone")
    assert not said(stays.frames, "lost") and not said(stays.frames, "lost too")
    assert await asyncio.to_thread(saved, postgres_url, locked) == [(1, "stays joined"), (2, "after")]
    assert not stays.closed and not talker.closed
    await stays.close()
    await talker.close()
