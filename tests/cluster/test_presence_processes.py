"""Live presence across two daphne processes on Redis and PostgreSQL: diffs, kill -9, SIGSTOP, bursts."""

from __future__ import annotations

import asyncio
import signal
import time
import typing

import pytest

from devservers import raise_nofile_limit
from tests.support.cluster import (
    Control,
    Member,
    PresenceView,
    cluster_env,
    migrate,
    presence_keys,
    start_cluster,
)
from tests.support.helpers import room_name

pytestmark = pytest.mark.timeout(180)


def view(member: Member) -> PresenceView:
    return PresenceView().apply(member.frames)


async def join(server: typing.Any, room: str, username: str) -> Member:
    member = await Member.open(server, f"/mp/presence/{room}?username={username}", username)
    await member.wait(lambda frames: any(f.get("type") == "presence_state" for f in frames), "its state")
    return member


async def sees(member: Member, keys: dict[str, int], what: str, timeout: float = 10.0) -> float:
    """Wait until a member's view (from its frames) is exactly ``keys``; return the seconds it took."""
    start = time.monotonic()
    await member.wait(lambda frames: PresenceView().apply(frames).keys() == keys, what, timeout=timeout)
    assert view(member).errors == [], view(member).errors
    return time.monotonic() - start


async def test_presence_is_the_same_from_both_processes_and_diffs_cross_them(
    redis_url: str, postgres_url: str, daphne_factory: typing.Any
) -> None:
    env = cluster_env(redis_url, postgres_url, {"PRESENCE_INTERVAL": 0.1})
    migrate(env)
    a, b = start_cluster(daphne_factory, env, 2)
    room = room_name("presence")
    ann = await join(a, room, "ann")
    bob = await join(b, room, "bob")
    assert view(bob).keys() == {"ann": 1, "bob": 1}  # b's first member sees a's at once
    await sees(ann, {"ann": 1, "bob": 1}, "bob's join from the other process")

    tab = await join(b, room, "ann")  # ann's second tab, on the other process
    await sees(ann, {"ann": 2, "bob": 1}, "its own second tab as a meta under its key")
    await sees(bob, {"ann": 2, "bob": 1}, "ann's second tab")
    controls = [await Control.open(server) for server in (a, b)]
    states = [await control("presence", room=room) for control in controls]
    assert states[0] == states[1], "ChannelBox.presence differs between processes"
    assert presence_keys(states[0]) == {"ann": 2, "bob": 1}
    assert [await control("presence_count", room=room) for control in controls] == [2, 2]

    await tab.close()  # closing one of two tabs leaves the key
    await sees(ann, {"ann": 1, "bob": 1}, "the second tab's leave")
    await bob.send("leave")
    await sees(ann, {"ann": 1}, "bob leaving the room")
    carl = await join(b, room, "carl")
    assert view(carl).keys() == {"ann": 1, "carl": 1}
    await sees(ann, {"ann": 1, "carl": 1}, "carl")
    for member in (ann, bob, carl):
        await member.close()


async def test_a_killed_process_leaves_within_the_timeout_and_a_frozen_one_comes_back_once(
    redis_url: str, postgres_url: str, daphne_factory: typing.Any
) -> None:
    env = cluster_env(redis_url, postgres_url)  # the defaults: PROCESS_TIMEOUT 10 s, interval 0.5 s
    migrate(env)
    a, b, c = start_cluster(daphne_factory, env, 3)
    room = room_name("faults")
    ann = await join(a, room, "ann")
    bob, bea = await join(b, room, "bob"), await join(b, room, "bea")
    cid = await join(c, room, "cid")
    everyone = {"ann": 1, "bob": 1, "bea": 1, "cid": 1}
    await sees(ann, everyone, "all four")

    c.kill()  # SIGKILL: no goodbye
    killed = time.monotonic()
    await sees(ann, {"ann": 1, "bob": 1, "bea": 1}, "the killed process's member leaving", timeout=20)
    took = time.monotonic() - killed
    print(f"\nkill -9: its members left {took:.1f} s after the kill")
    assert took <= 10.0 + 0.5 + 3.0, took  # PROCESS_TIMEOUT + one interval, with slack for a busy machine
    await sees(bob, {"ann": 1, "bob": 1, "bea": 1}, "the killed member's leave on the other survivor")

    assert b.pid is not None
    b._signal(signal.SIGSTOP)  # frozen past PROCESS_TIMEOUT: taken for dead
    try:
        await sees(ann, {"ann": 1}, "the frozen process's members leaving", timeout=20)
    finally:
        b._signal(signal.SIGCONT)
    resumed = time.monotonic()
    await sees(ann, {"ann": 1, "bob": 1, "bea": 1}, "the resumed process's members back", timeout=20)
    print(f"SIGSTOP: members back {time.monotonic() - resumed:.1f} s after SIGCONT")
    await sees(bob, {"ann": 1, "bob": 1, "bea": 1}, "a consistent view on the resumed process")
    states = [await (await Control.open(server))("presence", room=room) for server in (a, b)]
    assert states[0] == states[1]
    assert presence_keys(states[0]) == {"ann": 1, "bob": 1, "bea": 1}
    for member in (ann, bob, bea, cid):
        if not member.closed:
            await member.close()


async def test_a_burst_of_joins_reaches_each_member_in_a_handful_of_messages(
    redis_url: str, postgres_url: str, daphne_factory: typing.Any
) -> None:
    raise_nofile_limit(4096)
    env = cluster_env(redis_url, postgres_url, {"PRESENCE_INTERVAL": 0.5})
    migrate(env)
    a, b = start_cluster(daphne_factory, env, 2)
    room = room_name("burst")
    watchers = [await join(a, room, "watch-a"), await join(b, room, "watch-b")]
    await sees(watchers[0], {"watch-a": 1, "watch-b": 1}, "the other watcher")
    before = [len(w.frames) for w in watchers]
    started = time.monotonic()
    joiners = []
    for n in range(500):
        joiners.append(await Member.open((a, b)[n % 2], f"/mp/presence/{room}?username=u{n}", f"u{n}"))
    expected = {"watch-a": 1, "watch-b": 1, **{f"u{n}": 1 for n in range(500)}}
    for watcher in watchers:
        await sees(watcher, expected, "all 500 joins", timeout=60)
    elapsed = time.monotonic() - started
    received = [len(w.frames) - n for w, n in zip(watchers, before, strict=True)]
    print(f"\n500 joins over {elapsed:.1f} s: presence messages per watcher {received}")
    # At most one diff per interval per room, however many joined.
    assert all(count <= elapsed / 0.5 + 2 for count in received), received
    last = joiners[-1]
    await last.wait(lambda frames: bool(frames), "its state")
    assert last.frames[0]["type"] == "presence_state"
    for member in (*watchers, *joiners):
        await member.close()


async def test_above_the_list_limit_every_process_sends_counts(
    redis_url: str, postgres_url: str, daphne_factory: typing.Any
) -> None:
    env = cluster_env(redis_url, postgres_url, {"PRESENCE_INTERVAL": 0.1, "PRESENCE_MAX_LIST": 3})
    migrate(env)
    a, b = start_cluster(daphne_factory, env, 2)
    room = room_name("count")
    members = [await join(a, room, "p0"), await join(b, room, "p1"), await join(a, room, "p2")]
    await sees(members[1], {"p0": 1, "p1": 1, "p2": 1}, "three keys listed")
    fourth = await Member.open(b, f"/mp/presence/{room}?username=p3", "p3")
    await fourth.wait(lambda frames: bool(frames), "its first frame")
    assert fourth.frames[0] == {"type": "presence_count", "room": room, "count": 4}
    for member in members:
        await member.wait(lambda frames: 4 in view_counts(frames), "a count of 4")
    await fourth.close()
    for member in members:  # back to three: the list again
        await member.wait(
            lambda frames: frames[-1].get("type") == "presence_state" and len(frames[-1]["state"]) == 3,
            "the full state again",
        )
    for member in members:
        await member.close()


def view_counts(frames: list[typing.Any]) -> list[int]:
    return PresenceView().apply(frames).counts


async def test_presence_changed_while_redis_was_down_is_repaired_when_it_returns(
    redis_url: str, postgres_url: str, redis_server: typing.Any, daphne_factory: typing.Any
) -> None:
    env = cluster_env(redis_url, postgres_url, {"PRESENCE_INTERVAL": 0.1, "HEARTBEAT_INTERVAL": 0.5})
    migrate(env)
    a, b = start_cluster(daphne_factory, env, 2)
    room = room_name("redis")
    ann = await join(a, room, "ann")
    bob = await join(b, room, "bob")
    await sees(ann, {"ann": 1, "bob": 1}, "bob")

    await asyncio.to_thread(redis_server.stop)
    try:
        await bob.send("leave")  # its diff cannot be published: Redis is down
        bea = await join(b, room, "bea")  # joins on b; the DB rows seed b's view of a
        assert view(bea).keys() == {"ann": 1, "bea": 1}
    finally:
        await asyncio.to_thread(redis_server.start)
    # b's layer recovery re-announces its entries and asks for a's: both views converge.
    await sees(ann, {"ann": 1, "bea": 1}, "the changes made while Redis was down", timeout=30)
    await sees(bea, {"ann": 1, "bea": 1}, "an unchanged view")
    states = [await (await Control.open(server))("presence", room=room) for server in (a, b)]
    assert states[0] == states[1]
    for member in (ann, bob, bea):
        await member.close()
