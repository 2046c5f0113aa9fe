"""Two daphne processes that are healthy stay in the cluster; their saved broadcasts reorder.

Each test starts real daphne processes (``tests.sites.multiprocess.asgi``) on a fresh
PostgreSQL database and Redis, as ``test_multiprocess.py`` does, with the
settings it needs to make its case certain rather than likely.
"""

from __future__ import annotations

import datetime
import typing

import pytest

from devservers import DaphneServer
from tests.support.cluster import Control, Database, Member, chat_texts, chats, cluster_env, migrate
from tests.support.helpers import room_name, until

pytestmark = pytest.mark.timeout(120)

APP = "tests.sites.multiprocess.asgi:application"
# What a process logs when it removes a peer, and when it finds itself removed.
REMOVED = "Removed the members of a silent process"
REJOINED = "Peers removed this process"


async def test_healthy_processes_stay_in_the_cluster(
    redis_url: str, postgres_url: str, daphne_factory: typing.Any
) -> None:
    env = cluster_env(redis_url, postgres_url, {"HEARTBEAT_INTERVAL": 0.2, "PROCESS_TIMEOUT": 5.0})
    migrate(env)
    a, b = (daphne_factory(env=env, app=APP) for _ in range(2))
    room = room_name("healthy")
    members = [await Member.open(server, f"/mp/member/{room}", f"m{server.port}") for server in (a, b)]
    for member in members:
        await member.wait(lambda frames: len(frames) >= 1, "its channel id")
    db = Database(postgres_url)
    try:
        first = db.beats()
        assert len(first) == 2
        mark = max(beat for _, beat in first.values()) + datetime.timedelta(seconds=1)

        def both_beat_past_mark() -> bool:
            beats = db.beats()
            return len(beats) == 2 and all(beat > mark for _, beat in beats.values())

        # Five beats each, well inside PROCESS_TIMEOUT: neither may take the other for dead.
        await until(both_beat_past_mark, "both processes to beat for another second, neither removed")
        assert {process: started for process, (started, _) in db.beats().items()} == {
            process: started for process, (started, _) in first.items()
        }, "a healthy process was removed and registered again"
        assert sorted(process for _, process in db.members(room)) == sorted(first)
    finally:
        db.close()
    for server in (a, b):
        log = server.log()
        assert REMOVED not in log and REJOINED not in log, log[-3000:]


async def test_a_peer_whose_broadcasts_lag_is_reordered_into_seq_order(
    redis_url: str, postgres_url: str, daphne_factory: typing.Any
) -> None:
    env = cluster_env(redis_url, postgres_url)
    migrate(env)
    # a's broadcasts reach b half a second late (under REORDER_TIMEOUT, 1 s): what b's own
    # sender saves meanwhile is numbered after them and must wait for them.
    a: DaphneServer = daphne_factory(env={**env, "MP_LAYER_LAG": "0.5"}, app=APP)
    b: DaphneServer = daphne_factory(env=env, app=APP)
    room = room_name("lag")
    path = f"/ws/chat/{room}/?envelope=1&username="
    a0 = await Member.open(a, path + "a0", "a0")
    b0, b1 = [await Member.open(b, path + name, name) for name in ("b0", "b1")]
    for member in (a0, b0, b1):

        def joined(frames: list[typing.Any], m: Member = member) -> bool:
            return f"{m.name} joined" in str(frames)

        await member.wait(joined, "its own join notice")

    await a0.send({"type": "message", "content": "first"})
    await a0.wait(lambda frames: "first" in chat_texts(frames), "its own message")
    await b0.send({"type": "message", "content": "second"})
    for member in (a0, b0, b1):
        await member.wait(lambda frames: "second" in chat_texts(frames), "both messages")
        assert chat_texts(member.frames) == ["first", "second"], member.name
        seqs = [seq for seq, _ in chats(member.frames)]
        assert seqs == sorted(seqs), member.name
    stats = await (await Control.open(b))("stats")
    assert stats["held_back"] >= 1, f"b never had to hold a message back: {stats}"
