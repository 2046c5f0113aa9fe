"""The benchmark harness runs end to end (``bench/``; see bench/README.md).

Correctness only (every member got every message, in order): no timing is asserted,
the machine may be shared.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

from bench.load.chatload import ChatLoad
from bench.load.loadgen import run_load
from bench.scenarios.smoke import smoke_async
from bench.scenarios.stall import locked
from devservers import run_manage
from tests.support.fixtures import DaphneFactory

PEER = "bench.peers.nexios_compat_peer"


async def test_harness_runs_against_the_raw_websockets_peer() -> None:
    result = await smoke_async(members=5, messages=20)

    assert result["ok"], result
    assert result["delivered"] == 100
    assert result["errors"] == 0


async def test_load_generator_against_the_nexios_compat_peer(
    tmp_path: Path, daphne_factory: DaphneFactory
) -> None:
    env = {
        "DJANGO_SETTINGS_MODULE": f"{PEER}.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'bench.sqlite3'}",
        "REDIS_URL": "",  # the in-memory layer, whatever the caller's environment says
    }
    await asyncio.to_thread(run_manage, "migrate", "--noinput", env=env)
    server = await asyncio.to_thread(daphne_factory, env, app=f"{PEER}.asgi:application")

    result = await run_load(
        server.ws_url("/ws/bench/smoke/"),
        members=5,
        messages=20,
        origin=server.url,  # the peer serves the project's same-origin check
        stall_timeout=10.0,
    )

    assert result["ok"], result
    assert result["delivered"] == 100
    assert result["errors"] == 0


async def test_load_generator_spreads_members_over_two_processes(
    tmp_path: Path, daphne_factory: DaphneFactory, redis_url: str
) -> None:
    """Two daphne processes on one Redis and one database, as ``nexios_compat_2proc`` runs."""
    env = {
        "DJANGO_SETTINGS_MODULE": f"{PEER}.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'bench.sqlite3'}",
        "REDIS_URL": redis_url,
    }
    await asyncio.to_thread(run_manage, "migrate", "--noinput", env=env)
    servers = [await asyncio.to_thread(daphne_factory, env, app=f"{PEER}.asgi:application") for _ in range(2)]

    result = await run_load(
        [s.ws_url("/ws/bench/smoke-2/") for s in servers],
        members=6,
        messages=20,
        origin=[s.url for s in servers],
        stall_timeout=10.0,
    )

    assert result["ok"], result
    assert result["delivered"] == 120
    assert result["errors"] == 0


async def test_plain_channels_saved_peer_saves_every_message_before_sending(
    tmp_path: Path, daphne_factory: DaphneFactory
) -> None:
    """The issue's baseline peer: every delivered message has its row (one per message)."""
    db = tmp_path / "plain.sqlite3"
    env = {
        "DJANGO_SETTINGS_MODULE": "bench.peers.plain_channels_saved.settings",
        "DATABASE_URL": f"sqlite:///{db}",
        "REDIS_URL": "",
    }
    await asyncio.to_thread(run_manage, "migrate", "--noinput", env=env)
    server = await asyncio.to_thread(
        daphne_factory, env, app="bench.peers.plain_channels_saved.asgi:application"
    )

    result = await run_load(
        server.ws_url("/ws/bench-saved/smoke/"), members=5, messages=20, stall_timeout=10.0
    )

    assert result["ok"], result
    assert result["delivered"] == 100
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT content FROM plain_channels_saved_chatmessage").fetchall()
    seqs = sorted(json.loads(content)["seq"] for (content,) in rows)
    assert [s for s in seqs if s >= 0] == list(range(20))  # warm-ups (seq < 0) are saved too


async def test_chat_load_counts_every_delivery_and_the_stall_lock_holds_writes(
    tmp_path: Path, daphne_factory: DaphneFactory
) -> None:
    """A chat-site step against ours with history; then a locked table delays delivery."""
    env = {
        "DJANGO_SETTINGS_MODULE": f"{PEER}.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'bench.sqlite3'}",
        "REDIS_URL": "",
    }
    await asyncio.to_thread(run_manage, "migrate", "--noinput", env=env)
    server = await asyncio.to_thread(daphne_factory, env, app=f"{PEER}.asgi:application")
    load = ChatLoad(lambda room: server.ws_url(f"/ws/bench-saved/{room}/"), server.url, rooms=3, room_size=4)
    await load.open()
    try:
        step = await load.step(rate=60, seconds=0.5, drain_timeout=30.0)
        assert step["drained"], step
        assert step["delivered"] == step["sent"] * 4 > 0

        load.next_step()
        async with locked(env["DATABASE_URL"], "nexios_compat_message"):
            sent = await load.send_for(rate=40, seconds=0.3)
            # unlocked, a dozen messages arrive in milliseconds; saved ones wait for their commit
            delivered_while_locked = await load.drain(sent * 4, timeout=2.0)
        delivered_after = await load.drain(sent * 4, timeout=30.0)
    finally:
        await load.close()

    assert sent > 0
    assert not delivered_while_locked
    assert delivered_after
