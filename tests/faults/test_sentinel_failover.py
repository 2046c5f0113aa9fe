"""A Redis Sentinel failover under load: the primary is SIGKILLed and the Sentinel promotes its replica.

Two daphnes reach Redis through one Sentinel (``$MP_SENTINEL``); the fault-probe
workload (tests/support/fault_probe.py) runs throughout. Every message of the workload
is saved, so the test asserts the full set of invariants: acknowledged ones
are stored once, nothing is delivered unsaved, every client's stream has no
gap, the closed socket's row goes, and a new client round-trips a saved
message within 15 s of the promotion. What it does not cover: unsaved
broadcasts published to the old primary in its last moments (and whatever it
had not replicated) are lost; saved ones come back from history.
"""

from __future__ import annotations

import asyncio
import contextlib
import typing
from collections.abc import Iterator

import pytest
import redis

from devservers import MASTER_NAME, DaphneServer, RedisServer, SentinelServer, redis_available
from tests.support.cluster import Database, cluster_env, migrate
from tests.support.fault_probe import exercise, grew, scrape, value
from tests.support.fixtures import require_service
from tests.support.helpers import until, wait_for

pytestmark = pytest.mark.timeout(120)

SETTINGS = {"HEARTBEAT_INTERVAL": 0.5, "PROCESS_TIMEOUT": 3.0, "HISTORY_WRITE_TIMEOUT": 5.0}
GHOST_DEADLINE = 3.0 + 2 * 0.5 + 1.0


class Failover(typing.NamedTuple):
    primary: RedisServer
    replica: RedisServer
    sentinel: SentinelServer


def replicating(replica: RedisServer) -> bool:
    client = redis.Redis.from_url(replica.url, socket_timeout=2)
    try:
        return bool(client.info("replication").get("master_link_status") == "up")
    finally:
        client.close()


def sentinel_knows_replica(sentinel: SentinelServer, replica: RedisServer) -> bool:
    client = redis.Redis(host="127.0.0.1", port=sentinel.port, socket_timeout=2)
    try:
        return any(int(r["port"]) == replica.port for r in client.sentinel_slaves(MASTER_NAME))
    finally:
        client.close()


@pytest.fixture
def failover() -> Iterator[Failover]:
    require_service("redis-server", redis_available())
    with contextlib.ExitStack() as stack:
        primary = stack.enter_context(RedisServer().start())
        replica = RedisServer(extra_args=["--replicaof", "127.0.0.1", str(primary.port)])
        stack.enter_context(replica.start())
        wait_for(lambda: replicating(replica), "the replica to sync")
        sentinel = stack.enter_context(SentinelServer(primary, down_after=1000).start())
        wait_for(
            lambda: sentinel_knows_replica(sentinel, replica), "the Sentinel to find the replica", timeout=20
        )
        yield Failover(primary, replica, sentinel)


class Cluster(typing.NamedTuple):
    d1: DaphneServer
    d2: DaphneServer
    db: Database


async def test_a_sentinel_failover_under_load_keeps_every_saved_message(
    failover: Failover, postgres_url: str, daphne_factory: typing.Any
) -> None:
    env = {
        **cluster_env(failover.primary.url, postgres_url, SETTINGS),
        "MP_SENTINEL": failover.sentinel.address,
    }
    migrate(env)
    d1, d2 = (daphne_factory(env=env, app="tests.sites.probe.asgi:application") for _ in range(2))
    db = Database(postgres_url)

    async def promoted() -> None:
        await until(
            lambda: asyncio.to_thread(lambda: failover.sentinel.master_port() == failover.replica.port),
            "the Sentinel to promote the replica",
            timeout=30,
        )

    try:
        measured = await exercise(
            Cluster(d1, d2, db),
            failover.primary.kill,
            promoted,
            moved=grew("nexios_compat_layer_failures_total"),
            hold=0,  # the fault ends when the replica is promoted
            moved_within=10,
            ghost_deadline=GHOST_DEADLINE,
        )
    finally:
        db.close()

    def recovered() -> bool:
        return value(scrape(d1), "nexios_compat_recoveries_total", part="layer") >= 1

    await until(lambda: asyncio.to_thread(recovered), "d1 to count its layer recovery", timeout=15)
    assert measured["saved"] > 0
