"""The benchmark harness runs end to end (``bench/``; see bench/README.md).

Correctness only (every member got every message, in order): no timing is asserted,
the machine may be shared.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from bench.loadgen import run_load
from bench.smoke import smoke_async
from tests.fixtures_services import DaphneFactory
from tests.servers import run_manage

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
