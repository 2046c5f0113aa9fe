"""Several daphne processes on one Redis and one PostgreSQL: rooms span processes (issue #4).

Every test starts real daphne processes (``tests.sites.multiprocess.asgi``: the project's
routes plus ``/mp`` test routes) on a fresh PostgreSQL database and a fresh
Redis, and drives them with the ``websockets`` client. Settings are the
project's defaults unless a test says otherwise. The tests that prove
membership, cross-process ``send_to``, ordering and Redis restarts run on
each layer a site may already run: channels_redis's ``RedisChannelLayer``
and ``RedisPubSubChannelLayer``, directly and (membership) through a Sentinel.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
import typing
import uuid
from collections.abc import Iterator

import pytest
import redis

from devservers import DaphneServer, RedisServer, SentinelServer, raise_nofile_limit
from tests.support.cluster import (
    TIMEOUT,
    Control,
    Database,
    Member,
    chat_texts,
    chats,
    cluster_env,
    migrate,
    start_cluster,
)
from tests.support.helpers import room_name, until
from tests.support.site import open_ws

pytestmark = pytest.mark.timeout(120)

# ``$MP_LAYER`` values of tests.sites.multiprocess.settings; "+sentinel": Redis found through a Sentinel.
BOTH_LAYERS = pytest.mark.parametrize("layer", ["redis", "pubsub"])


@pytest.fixture
def layer() -> str:
    """The cluster's channel layer: ``RedisChannelLayer`` unless a test is parametrized over more."""
    return "redis"


@pytest.fixture
def sentinel(redis_server: RedisServer, redis_url: str) -> Iterator[SentinelServer]:
    """A Sentinel whose primary is the (fresh) session Redis."""
    server = SentinelServer(redis_server)
    try:
        yield server.start()
    finally:
        server.close()


@pytest.fixture
def env(layer: str, redis_url: str, postgres_url: str, request: pytest.FixtureRequest) -> dict[str, str]:
    """A migrated cluster database and a fresh Redis, as daphne environment variables."""
    env = cluster_env(redis_url, postgres_url)
    kind, _, via = layer.partition("+")
    env["MP_LAYER"] = kind
    if via == "sentinel":
        env["MP_SENTINEL"] = request.getfixturevalue("sentinel").address
    migrate(env)
    return env


def subscribed_processes(client: redis.Redis, layer: str, room: str) -> set[str] | int:
    """The hub channels in a room's layer group (``RedisChannelLayer``), or how many connections
    subscribe to it (``RedisPubSubChannelLayer``: one per process)."""
    if layer.startswith("pubsub"):
        ((_, count),) = client.pubsub_numsub(f"asgi__group__nexios.g.{room}")
        return int(count)
    return {
        name.decode()
        for name in typing.cast(list[bytes], client.zrange(f"asgi:group:nexios.g.{room}", 0, -1))
    }


@pytest.fixture
def db(postgres_url: str) -> Iterator[Database]:
    database = Database(postgres_url)
    yield database
    database.close()


def chat_path(room: str, user: str, since: int | None = None) -> str:
    path = f"/ws/chat/{room}/?envelope=1&username={user}"
    return path if since is None else f"{path}&since={since}"


async def join_chat(server: DaphneServer, room: str, user: str, since: int | None = None) -> Member:
    """Join the chat room endpoint and wait for our own join notice."""
    member = await Member.open(server, chat_path(room, user, since), user)
    await member.wait(lambda frames: any(_is_join(frame, user) for frame in frames), "its own join notice")
    return member


def _is_join(frame: typing.Any, user: str) -> bool:
    payload = frame.get("payload", {}) if isinstance(frame, dict) else {}
    return payload.get("type") == "system" and payload.get("message") == f"{user} joined"


def assert_contiguous(member: Member, last: int) -> None:
    """Every saved message from the member's first one to ``last``: once each, in order."""
    seqs = member.seqs()
    assert seqs, f"{member.name} received nothing"
    assert seqs == list(range(seqs[0], last + 1)), f"{member.name} got {seqs}"


# One process, many sockets -----------------------------------------------------


async def test_one_process_holds_500_sockets_in_one_room(
    env: dict[str, str], daphne_factory: typing.Any, db: Database, redis_url: str
) -> None:
    count = 500
    raise_nofile_limit(4 * count)
    (server,) = start_cluster(daphne_factory, env, 1)
    room = room_name("crowd")
    sockets = []
    for start in range(0, count, 50):  # 2 cores: handshakes in batches, not 500 at once
        sockets += await asyncio.gather(
            *(open_ws(server, f"/seeds/room/{room}", ping_interval=None) for _ in range(start, start + 50))
        )
    try:
        await until(lambda: len(db.members(room)) == count, f"{count} members in the database", timeout=60)
        # Idle past redis-py's default 5 s socket timeout (the BZPOPMIN trap in DESIGN.md):
        # a hub whose pool kept that default would drop its reader connection here.
        await asyncio.sleep(6)
        await sockets[0].send('{"user": "u0", "message": "hello, everyone"}')

        async def received(ws: typing.Any) -> typing.Any:
            return json.loads(await asyncio.wait_for(ws.recv(), 30))

        frames = await asyncio.gather(*(received(ws) for ws in sockets))
        assert all(frame["message"] == "hello, everyone" and frame["user"] == "u0" for frame in frames)
        assert len(frames) == count
        log = server.log()
        assert "MaxConnectionsError" not in log and "Too many connections" not in log, log[-3000:]
        client = redis.Redis.from_url(redis_url)
        try:  # for docs/deployment.md: the hub needs few connections, whatever the socket count
            print(f"Redis connections with {count} sockets on one process:", len(client.client_list()) - 1)
        finally:
            client.close()
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)


# Order, membership and commands across processes --------------------------------


@BOTH_LAYERS
async def test_concurrent_senders_on_two_processes_are_seen_in_one_order(
    env: dict[str, str], daphne_factory: typing.Any, db: Database
) -> None:
    a, b = start_cluster(daphne_factory, env, 2)
    room = room_name("order")
    members = [
        await join_chat(server, room, f"{side}{i}") for side, server in (("a", a), ("b", b)) for i in range(3)
    ]
    senders = [m for m in members if m.name in {"a0", "a1", "b0", "b1"}]
    per_sender = 30  # under the default burst of 40 frames per connection

    async def send_all(member: Member) -> None:
        for i in range(per_sender):
            await member.send({"type": "message", "content": f"{member.name}-{i}"})

    await asyncio.gather(*(send_all(sender) for sender in senders))
    total = per_sender * len(senders)
    for member in members:
        await member.wait(lambda frames: len(chats(frames)) >= total, f"{total} chat messages", 30)

    history = db.history(room)
    last = history[-1][0]
    saved_chats = [(seq, payload["message"]) for seq, payload in history if payload["type"] == "chat"]
    assert len(saved_chats) == total
    for member in members:
        assert_contiguous(member, last)
        # The same messages in the same order on every socket of both processes, as saved.
        assert chats(member.frames) == saved_chats, member.name
    for sender in senders:  # each sender's own messages keep the order it sent them in
        mine = [text for _, text in saved_chats if text.startswith(f"{sender.name}-")]
        assert mine == [f"{sender.name}-{i}" for i in range(per_sender)]
    # Whatever each member received beyond its join is in history under the same number.
    saved = dict(history)
    for member in members:
        for frame in member.frames:
            if "seq" in frame:  # not a presence event
                assert saved[frame["seq"]] == frame["payload"]
    stats = [await (await Control.open(server))("stats") for server in (a, b)]
    print("held back / gap fills per process:", [(s["held_back"], s["gap_fills"]) for s in stats])


@pytest.mark.parametrize("layer", ["redis", "pubsub", "redis+sentinel", "pubsub+sentinel"])
async def test_membership_send_to_and_close_all_span_processes(
    env: dict[str, str], daphne_factory: typing.Any
) -> None:
    a, b = start_cluster(daphne_factory, env, 2)
    room, only_b = room_name("shared"), room_name("only-b")
    on_a = [await Member.open(a, f"/mp/member/{room}", f"a{i}") for i in range(2)]
    on_b = [await Member.open(b, f"/mp/member/{room}", f"b{i}") for i in range(3)]
    lonely = await Member.open(b, f"/mp/member/{only_b}", "lonely")
    everyone = [*on_a, *on_b, lonely]
    for member in everyone:
        await member.wait(lambda frames: len(frames) >= 1, "its channel id")
    ids = {member.name: member.frames[0]["id"] for member in everyone}
    control_a, control_b = await Control.open(a), await Control.open(b)

    # show_groups(), group() and counts are the same from both processes.
    expected = {room: {ids[m.name] for m in [*on_a, *on_b]}, only_b: {ids["lonely"]}}
    for control, local in ((control_a, on_a), (control_b, [*on_b, lonely])):
        groups = await control("groups")
        assert {name: {m["id"] for m in listed} for name, listed in groups.items()} == expected
        local_ids = {ids[m.name] for m in local}
        assert {m["id"] for listed in groups.values() for m in listed if m["local"]} == local_ids
        assert {m["id"] for m in await control("group", room=room)} == expected[room]

    # NO_SUCH_GROUP only when no process has a member.
    assert await control_a("group_send", room=room_name("nobody"), payload={}) == "NO_SUCH_GROUP"
    assert await control_a("group_send", room=only_b, payload={"to": "only-b"}) == "GROUP_SEND"
    await lonely.wait(lambda frames: {"to": "only-b"} in frames, "a broadcast sent from the other process")

    # send_to reaches a socket held by the other process, and only that socket.
    assert await control_a("send_to", id=ids["b1"], payload={"direct": True}) is True
    assert await control_a("send_to", id=str(uuid.uuid4()), payload={}) is False
    await control_a("group_send", room=room, payload={"after": "direct"})
    for member in [*on_a, *on_b]:
        await member.wait(lambda frames: {"after": "direct"} in frames, "the broadcast after send_to")
        direct = [frame for frame in member.frames if frame == {"direct": True}]
        assert direct == ([{"direct": True}] if member.name == "b1" else []), member.name
    assert on_b[1].frames.index({"direct": True}) < on_b[1].frames.index({"after": "direct"})

    # close_all_connections() from one process closes the sockets of every process: those of
    # one room (the admin's "Close connections" action), then all of them.
    await control_a("close_all", room=only_b)
    assert await lonely.wait_closed() == 1000
    await control_a("group_send", room=room, payload={"still": "open"})
    for member in [*on_a, *on_b]:
        await member.wait(
            lambda frames: {"still": "open"} in frames, "a broadcast after closing the other room"
        )
    await control_a("close_all")
    for member in everyone:
        assert await member.wait_closed() == 1000, member.name

    async def no_groups() -> bool:
        return not await control_b("groups")

    await until(no_groups, "no members left after close_all", timeout=TIMEOUT)


async def test_one_subscription_per_process_and_one_group_send_per_broadcast(
    env: dict[str, str], daphne_factory: typing.Any, redis_url: str
) -> None:
    a, b = start_cluster(daphne_factory, env, 2)
    room = room_name("count")
    members = [
        await Member.open(server, f"/mp/member/{room}", f"{server.port}-{i}")
        for server in (a, b)
        for i in range(4)
    ]
    for member in members:
        await member.wait(lambda frames: len(frames) >= 1, "its channel id")
    control_a, control_b = await Control.open(a), await Control.open(b)
    before = [await control("stats") for control in (control_a, control_b)]
    hub_channels = {stats["layer_channel"] for stats in before}

    client = redis.Redis.from_url(redis_url)
    group_key = f"asgi:group:nexios.g.{room}"
    # Eight sockets, two subscriptions: one per process.
    assert {
        name.decode() for name in typing.cast(list[bytes], client.zrange(group_key, 0, -1))
    } == hub_channels

    monitor = RedisMonitor(redis_url)
    with monitor:
        await control_a("group_send", room=room, payload={"n": 1})
        for member in members:
            await member.wait(lambda frames: {"n": 1} in frames, "the counted broadcast")
    commands = monitor.commands
    client.close()

    # One group_send: it reads the group once and queues one message per process.
    group_reads = [line for _, line in commands if line.startswith(f"ZRANGE {group_key} ")]
    assert len(group_reads) == 1, group_reads
    # (The receiving hubs' own ZADDs to their "$inflight" backup queues come from plain clients.)
    fanout_writes = [
        line.split()[1]
        for client, line in commands
        if client == "lua" and line.startswith("ZADD ") and "nexios.fanout" in line
    ]
    assert sorted(fanout_writes) == sorted(f"asgi{channel.split('!')[0]}!" for channel in hub_channels)
    after = [await control("stats") for control in (control_a, control_b)]
    for old, new in zip(before, after, strict=True):
        assert new["received"].get("nexios.fanout", 0) - old["received"].get("nexios.fanout", 0) == 1


class RedisMonitor:
    """Record every command Redis runs (scripts' commands too) while the ``with`` block runs."""

    def __init__(self, url: str) -> None:
        self.url = url
        # (client type: "tcp", or "lua" for what a script ran; the command line)
        self.commands: list[tuple[str, str]] = []
        self.marker = f"end-of-monitor-{uuid.uuid4().hex}"
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        client = redis.Redis.from_url(self.url, socket_timeout=60)
        try:
            with client.monitor() as monitor:
                self._ready.set()
                for command in monitor.listen():
                    if self.marker in command["command"]:
                        return
                    self.commands.append((command["client_type"], command["command"]))
        finally:
            client.close()

    def __enter__(self) -> RedisMonitor:
        self._thread.start()
        assert self._ready.wait(TIMEOUT), "MONITOR did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        client = redis.Redis.from_url(self.url)
        try:
            client.echo(self.marker)
        finally:
            client.close()
        self._thread.join(TIMEOUT)


# Failures ----------------------------------------------------------------------


async def test_survivors_remove_a_killed_process_and_its_clients_resume_elsewhere(
    env: dict[str, str], daphne_factory: typing.Any, db: Database
) -> None:
    a, b = start_cluster(daphne_factory, env, 2)  # default HEARTBEAT_INTERVAL and PROCESS_TIMEOUT
    room = room_name("ghosts")
    a_process = (await (await Control.open(a))("stats"))["process_id"]
    on_a = [await join_chat(a, room, f"a{i}") for i in range(3)]
    on_b = [await join_chat(b, room, f"b{i}") for i in range(2)]
    for i in range(3):
        await on_b[0].send({"type": "message", "content": f"before-{i}"})
    for member in [*on_a, *on_b]:
        await member.wait(lambda frames: "before-2" in chat_texts(frames), "the messages before the kill")

    a.kill()
    killed = time.monotonic()
    for member in on_a:
        await member.wait_closed()
    # b keeps serving while a's members are still listed.
    for i in range(3):
        await on_b[0].send({"type": "message", "content": f"during-{i}"})
    await on_b[1].wait(lambda frames: "during-2" in chat_texts(frames), "messages sent after the kill")

    def ghosts() -> list[tuple[str, str]]:
        return [row for row in db.members(room) if row[1] == a_process]

    assert ghosts(), "the killed process's members vanished before anyone noticed"
    await until(
        lambda: not ghosts(), "the killed process's members to go", timeout=15 - (time.monotonic() - killed)
    )
    removed_after = time.monotonic() - killed
    print(f"members of the SIGKILLed process removed after {removed_after:.1f}s")
    assert removed_after < 15
    assert a_process not in db.processes()
    assert len(await (await Control.open(b))("group", room=room)) == 2

    # The killed process's clients reconnect to the survivor and resume from their last number.
    resumed = [await join_chat(b, room, member.name, since=member.seqs()[-1]) for member in on_a]
    for i in range(2):
        await on_b[0].send({"type": "message", "content": f"after-{i}"})
    for member in [*resumed, *on_b]:
        await member.wait(lambda frames: "after-1" in chat_texts(frames), "messages after resuming")
    last = db.history(room)[-1][0]
    for before, after in zip(on_a, resumed, strict=True):
        seqs = before.seqs() + after.seqs()
        assert seqs == list(range(seqs[0], last + 1)), f"{before.name} missed or repeated: {seqs}"
        texts = chat_texts(before.frames + after.frames)
        assert [t for t in texts if t.startswith("during-")] == ["during-0", "during-1", "during-2"]
    for member in on_b:
        assert_contiguous(member, last)


async def test_a_stopped_process_is_removed_at_the_peers_next_heartbeat(
    env: dict[str, str], daphne_factory: typing.Any, db: Database
) -> None:
    """daphne exits on SIGTERM without closing its applications; the hub retires its process at exit."""
    a, b = start_cluster(daphne_factory, env, 2)
    room = room_name("stopped")
    for name in ("a0", "a1"):
        await join_chat(a, room, name)
    await join_chat(b, room, "b0")
    assert len(db.members(room)) == 3
    stopped = time.monotonic()
    await asyncio.to_thread(a.stop)
    # Sooner than PROCESS_TIMEOUT (10 s), after which a crashed process's members go.
    await until(
        lambda: len(db.members(room)) == 1, "a's members to go", timeout=8 - (time.monotonic() - stopped)
    )
    print(f"members of the SIGTERMed process removed after {time.monotonic() - stopped:.1f}s")
    assert len(db.processes()) == 1


@BOTH_LAYERS
async def test_rooms_work_again_after_redis_restarts_during_traffic(
    env: dict[str, str],
    daphne_factory: typing.Any,
    db: Database,
    redis_server: RedisServer,
    redis_url: str,
    layer: str,
) -> None:
    """Redis goes away while both processes keep taking messages, then comes back empty.

    ``redis_server.restart()`` split in two (stop, traffic, start) so that the
    outage certainly overlaps the traffic.
    """
    a, b = start_cluster(daphne_factory, env, 2)
    room = room_name("outage")
    a0, a1 = [await join_chat(a, room, f"a{i}") for i in range(2)]
    b0, b1 = [await join_chat(b, room, f"b{i}") for i in range(2)]
    everyone = [a0, a1, b0, b1]
    control_a, control_b = await Control.open(a), await Control.open(b)
    hub_channels = {(await control("stats"))["layer_channel"] for control in (control_a, control_b)}

    async def say(sender: Member, text: str) -> None:
        await sender.send({"type": "message", "content": text})
        await sender.wait(lambda frames: text in chat_texts(frames), f"its own {text!r}")

    await say(a0, "before-a")
    await say(b0, "before-b")
    await asyncio.to_thread(redis_server.stop)
    # Saved and shown to the sender's process; the other one reads them from history.
    for i in range(2):
        await say(a0, f"outage-a{i}")
        await say(b0, f"outage-b{i}")
    await asyncio.to_thread(redis_server.start)

    client = redis.Redis.from_url(redis_url)
    expected = len(hub_channels) if layer == "pubsub" else hub_channels
    try:
        took = await until(
            lambda: subscribed_processes(client, layer, room) == expected,
            "both hubs to re-add their subscription",
            timeout=20,
        )
        print(f"subscriptions re-added {took:.1f}s after Redis came back")
    finally:
        client.close()
    await say(a0, "after-a")
    await b1.wait(lambda frames: "after-a" in chat_texts(frames), "a message from the other process")
    await say(b0, "after-b")
    await a1.wait(lambda frames: "after-b" in chat_texts(frames), "a message from the other process")

    last = db.history(room)[-1][0]
    for member in everyone:

        def has_last(frames: list[typing.Any], m: Member = member) -> bool:
            return last in m.seqs()

        await member.wait(has_last, "every saved message")
        assert_contiguous(member, last)
        assert not member.closed, f"{member.name} was disconnected"
    assert [text for _, text in chats(a1.frames)] == [text for _, text in chats(b1.frames)]
    for control in (control_a, control_b):
        assert (await control("stats"))["recoveries"] >= 1


async def test_a_process_taken_for_dead_rejoins(
    redis_url: str, postgres_url: str, daphne_factory: typing.Any, db: Database
) -> None:
    """A process frozen past PROCESS_TIMEOUT is removed by its peers; thawed, it registers again."""
    env = cluster_env(redis_url, postgres_url, {"HEARTBEAT_INTERVAL": 0.3, "PROCESS_TIMEOUT": 1.5})
    migrate(env)
    a, b = start_cluster(daphne_factory, env, 2)
    room = room_name("frozen")
    on_a = await Member.open(a, f"/mp/member/{room}", "a")
    on_b = await Member.open(b, f"/mp/member/{room}", "b")
    for member in (on_a, on_b):
        await member.wait(lambda frames: len(frames) >= 1, "its channel id")
    a_process = on_a.frames[0]["process"]
    assert a.pid is not None
    os.kill(a.pid, signal.SIGSTOP)
    try:
        await until(
            lambda: a_process not in db.processes(), "the peers to remove the frozen process", timeout=10
        )
    finally:
        os.kill(a.pid, signal.SIGCONT)
    await until(
        lambda: (on_a.frames[0]["id"], a_process) in db.members(room), "its member to come back", timeout=10
    )
    control_b = await Control.open(b)
    await control_b("group_send", room=room, payload={"welcome": "back"})
    await on_a.wait(lambda frames: {"welcome": "back"} in frames, "a broadcast from the peer")
