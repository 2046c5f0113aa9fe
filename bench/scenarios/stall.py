"""The stalled-database scenario: the server's memory while its database is locked for 10 s.

Chat-site load (rooms of 10, every member sending saved messages at a steady total rate)
runs for ``before`` s, then a separate connection locks the message table for ``STALL_S`` s
(SQLite: a ``BEGIN IMMEDIATE`` transaction on the file; PostgreSQL: ``LOCK TABLE ... IN
ACCESS EXCLUSIVE MODE``) while the senders keep sending, then the lock is released, the
senders stop, and every message must still reach every member. The server's RSS (all its
processes) is sampled throughout: before, its peak during the stall, at the end of the stall,
and once everything is delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bench.harness.launch import Launch, Unavailable
from bench.harness.procs import ServerGroup
from bench.harness.services import Services
from bench.load.chatload import ChatLoad
from bench.systems import System, chat_systems

STALL_S = 10.0
BEFORE_S = 3.0
AFTER_SEND_S = 2.0  # senders keep going this long after the release
RSS_GROWTH_LIMIT_MIB = 32.0  # the target: the stall costs at most this much memory
TABLES = {"nexios_compat": "nexios_compat_message", "plain_channels": "plain_channels_saved_chatmessage"}


def stall_systems() -> list[System]:
    """Ours, one process, on SQLite and on PostgreSQL."""
    names = ("nexios_compat_saved_sqlite_1proc", "nexios_compat_saved_pg_1proc")
    return [s for s in chat_systems() if s.name in names]


@contextlib.asynccontextmanager
async def locked(database_url: str, table: str) -> AsyncIterator[None]:
    """Hold a write lock on ``table`` (all of SQLite's file) on a connection of our own."""
    if database_url.startswith("sqlite:///"):
        # used from worker threads (to_thread), one at a time
        conn = sqlite3.connect(
            database_url.removeprefix("sqlite://"), timeout=30, isolation_level=None, check_same_thread=False
        )
        await asyncio.to_thread(conn.execute, "BEGIN IMMEDIATE")
        try:
            yield
        finally:
            await asyncio.to_thread(conn.execute, "ROLLBACK")
            conn.close()
        return
    import psycopg

    pg = await psycopg.AsyncConnection.connect(database_url)
    try:
        await pg.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")  # opens the transaction
        yield
        await pg.rollback()
    finally:
        await pg.close()


class RssSampler:
    """Samples a server's RSS every 0.2 s into (seconds since start, MiB) pairs."""

    def __init__(self, server: ServerGroup) -> None:
        self.server = server
        self.samples: list[tuple[float, float]] = []
        self.t0 = time.monotonic()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            self.samples.append((time.monotonic() - self.t0, self.server.rss() / 2**20))
            await asyncio.sleep(0.2)

    def now(self) -> float:
        """Seconds since the sampler started."""
        return time.monotonic() - self.t0

    def between(self, start: float, end: float) -> list[float]:
        """The samples (MiB) taken in ``[start, end)``."""
        return [mib for t, mib in self.samples if start <= t < end]

    async def stop(self) -> None:
        """Stop sampling."""
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def _stalled_run(load: ChatLoad, launch: Launch, server: ServerGroup, rate: float) -> dict[str, Any]:
    table = TABLES["plain_channels" if "plain_channels" in launch.system.name else "nexios_compat"]
    sampler = RssSampler(server)
    load.next_step()
    sending = asyncio.create_task(load.send_for(rate, BEFORE_S + STALL_S + AFTER_SEND_S))
    try:
        await asyncio.sleep(BEFORE_S)
        t_lock = sampler.now()
        async with locked(launch.database_url, table):
            at_lock = load.received
            await asyncio.sleep(STALL_S)
            # saved messages cannot be delivered before their commit: near 0 if the lock held
            during_stall = load.received - at_lock
        t_release = sampler.now()
        sent = await sending
        drained = await load.drain(sent * load.room_size, timeout=60.0)
        t_drained = sampler.now()
        await asyncio.sleep(1.0)
    finally:
        sending.cancel()
        await asyncio.gather(sending, return_exceptions=True)
        await sampler.stop()
    before = statistics.median(sampler.between(0.5, t_lock) or [0.0])
    during = sampler.between(t_lock, t_release)
    peak = max(during or [0.0])
    return {
        "rate_per_s": rate,
        "stall_s": round(t_release - t_lock, 2),
        "sent": sent,
        "expected": sent * load.room_size,
        "delivered": load.received,
        "delivered_during_stall": during_stall,
        "drained": drained,
        "drain_s_after_release": round(t_drained - t_release, 2),
        "rss_before_mib": round(before, 1),
        "rss_peak_during_mib": round(peak, 1),
        "rss_end_of_stall_mib": round(during[-1], 1) if during else None,
        "rss_after_mib": round(sampler.samples[-1][1], 1),
        "rss_growth_mib": round(peak - before, 1),
        "connections_closed": load.closed,
    }


async def stall_system(system: System, rate: float, services: Services, work: Path) -> dict[str, Any]:
    """One system under a stalled database; never raises."""
    out: dict[str, Any] = {"name": system.name, "status": "ok"}
    print(f"== stalled database: {system.name} at {rate:g} saved messages/s", flush=True)
    try:
        with Launch(system, work, services.redis, services.postgres) as launch:
            server = await launch.start()
            load = ChatLoad(launch.urls, launch.origins(), 20, 10)
            try:
                await load.open()
                out.update(await _stalled_run(load, launch, server, rate))
            finally:
                await load.close()
                server.stop()
        ok = out["drained"] and not out["connections_closed"]
        out["bounded"] = ok and out["rss_growth_mib"] <= RSS_GROWTH_LIMIT_MIB
        if not ok:
            out["status"] = "degraded"
    except Unavailable as exc:
        out.update(status="error", error=str(exc))
    except Exception as exc:
        out.update(status="error", error=f"{type(exc).__name__}: {exc}")
    print(
        f"    RSS {out.get('rss_before_mib')} -> peak {out.get('rss_peak_during_mib')} -> after"
        f" {out.get('rss_after_mib')} MiB; delivered {out.get('delivered')}/{out.get('expected')}"
        + (f" [{out['error'][:200]}]" if out.get("error") else ""),
        flush=True,
    )
    return out


async def run_stall(systems: list[System], quick: bool, services: Services, work: Path) -> dict[str, Any]:
    """The scenario over ``systems``: ``{"rate_per_s", "limit_mib", "systems": {name: result}}``."""
    rate = 300.0 if quick else 500.0
    results = {s.name: await stall_system(s, rate, services, work) for s in systems}
    return {"rate_per_s": rate, "stall_s": STALL_S, "limit_mib": RSS_GROWTH_LIMIT_MIB, "systems": results}
