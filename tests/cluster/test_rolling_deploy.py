"""A rolling deploy behind nginx loses nothing: each of three daphnes restarted in turn under load.

nginx runs ``deploy/nginx.conf`` (upstream of the daphnes, upgrade headers,
X-Forwarded-For set) in front of three daphnes on Redis and PostgreSQL. The
fault-probe workload (senders of saved messages with acks, readers resuming with
``?since=&epoch=``) and presence watchers connect only through nginx. Each daphne
in turn gets SIGTERM (every socket closed with 1001, handlers finish), exits, and a
new one starts on its port; the next waits for its ``/health/ready`` and for the
load to flow again. Then every invariant of the probe holds (acknowledged means
stored once, nothing delivered unsaved, no resume gap), and presence shows each
person once. The test prints what the clients paid: reconnections, time without a
connection, messages caught up from history.
"""

from __future__ import annotations

import asyncio
import json
import typing
from pathlib import Path

import pytest

from devservers import DaphneServer
from tests.support.cluster import Database, cluster_env, migrate
from tests.support.fault_probe import ProbeClient, check_invariants, settle
from tests.support.helpers import room_name, until
from tests.support.nginx import Nginx
from tests.support.rolling import PresenceWatcher, report, roll, routed_to

pytestmark = pytest.mark.timeout(150)

APP = "tests.sites.probe.asgi:application"
SETTINGS = {
    "HEARTBEAT_INTERVAL": 0.5,
    "PROCESS_TIMEOUT": 3.0,
    "SHUTDOWN_TIMEOUT": 5.0,
    "SHUTDOWN_RETRY_AFTER": 1,
}
PEOPLE = 3


async def rolling_deploy(
    redis_url: str,
    postgres_url: str,
    daphne_factory: typing.Any,
    directory: Path,
    *,
    graceful: bool = True,
    resume: bool = True,
    count: int | None = None,
) -> dict[str, typing.Any]:
    """The topology, the load, one restart of each daphne, every invariant; return the report."""
    env = {**cluster_env(redis_url, postgres_url, SETTINGS), "BEHIND_TLS_PROXY": "1"}
    migrate(env)

    def start(port: int | None = None) -> DaphneServer:
        server: DaphneServer = daphne_factory(env=env, app=APP, port=port, extra_args=["--proxy-headers"])
        return server

    daphnes = [start() for _ in range(3)]
    proxy = Nginx(directory, daphnes).start()
    db = Database(postgres_url)
    room, lobby = room_name("roll"), room_name("people")
    readers = [ProbeClient(f"r{n}", [proxy], room, 0, connect=proxy.connect, resume=resume) for n in range(3)]
    senders = [
        ProbeClient(f"s{n}", [proxy], room, 0, rate=5, connect=proxy.connect, resume=resume) for n in range(3)
    ]
    clients = [*readers, *senders]
    watchers = [PresenceWatcher(f"p{n}", proxy, lobby, proxy.connect) for n in range(PEOPLE)]
    everyone = {w.name: 1 for w in watchers}

    async def settled() -> float:
        """Every sender acknowledged again, every watcher shown each person once."""
        acked = [len(s.acked) for s in senders]

        def flowing() -> bool:
            return all(len(s.acked) >= a + 3 for s, a in zip(senders, acked, strict=True))

        try:
            return await until(
                lambda: flowing() and all(w.shown() == everyone for w in watchers),
                "the load to flow again and presence to show each person once",
                timeout=20,
            )
        except AssertionError as exc:
            shown = {w.name: (w.shown(), w.connections, w.failures[-2:]) for w in watchers}
            raise AssertionError(f"{exc}; flowing: {flowing()}, presence: {shown}") from None

    try:
        await settled()
        steps = await roll(
            daphnes,
            start,
            lambda server: routed_to(proxy, server, proxy.connect),
            settled,
            graceful=graceful,
            count=count,
        )
        last = await settle(clients, db, room)
        counts = check_invariants(clients, await asyncio.to_thread(db.history, room))
        errors = {w.name: w.errors() for w in watchers if w.errors()}
        assert not errors, f"presence views went wrong: {errors}"
        assert all(w.shown() == everyone for w in watchers)
        measured = {"last_seq": last, **counts, **report(clients, watchers, steps)}
        print(f"rolling deploy through {proxy.url}: {json.dumps(measured, indent=1, default=str)}")
        return measured
    finally:
        for client in clients:
            await client.stop()
        for watcher in watchers:
            await watcher.stop()
        db.close()
        proxy.stop()
        print(f"----- nginx error log -----\n{proxy.log()}")


# What SHUTDOWN_RETRY_AFTER = 1 makes the 1001 close say (engine/shutdown.py, docs/rolling.md).
RETRY_REASON = "Server shutting down; retry-after=1"


def graceful_closes(measured: dict[str, typing.Any]) -> list[str]:
    """What graceful shutdown promised and a restart broke: each close that was not 1001 with the
    retry hint, and the sends left unanswered when their connection closed (empty: all kept)."""
    broken = [
        f"{n} x close {close!r}" for close, n in measured["closes"].items() if close != f"1001 {RETRY_REASON}"
    ]
    if measured["unanswered_at_close"]:
        broken.append(f"{measured['unanswered_at_close']} sends unanswered at close")
    return broken


async def test_a_rolling_deploy_behind_nginx_loses_nothing(
    redis_url: str, postgres_url: str, daphne_factory: typing.Any, tmp_path: Path
) -> None:
    measured = await rolling_deploy(redis_url, postgres_url, daphne_factory, tmp_path)
    assert measured["saved"] > 0 and measured["acked"] > 0
    # Every client was on a restarted process at least once, and came back.
    assert all(count >= 1 for count in measured["reconnects"].values()), measured["reconnects"]
    # ...and every connection a restart ended was closed by the server, with 1001 and the retry
    # window, after its sends were answered: what SIGTERM's graceful shutdown buys.
    assert sum(measured["closes"].values()) >= sum(measured["reconnects"].values()), measured["closes"]
    assert graceful_closes(measured) == [], measured


async def test_a_killed_daphne_breaks_what_graceful_shutdown_promises(
    redis_url: str, postgres_url: str, daphne_factory: typing.Any, tmp_path: Path
) -> None:
    """The assertions above can fail: one daphne SIGKILLed instead of stopped, and its clients see
    the TCP connection end through nginx with no close frame (1006), so no retry hint either."""
    measured = await rolling_deploy(
        redis_url, postgres_url, daphne_factory, tmp_path, graceful=False, count=1
    )
    assert measured["closes"], "the killed daphne's clients saw their connections end"
    assert graceful_closes(measured) != []
    assert "1006 " in measured["closes"], measured["closes"]
    assert f"1001 {RETRY_REASON}" not in measured["closes"], measured["closes"]
