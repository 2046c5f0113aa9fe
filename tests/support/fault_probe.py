"""The fault-probe workload: clients of ``/probe/{room}/`` (tests/sites/probe/asgi.py) that follow a room's
saved stream across reconnections, senders that record acknowledgements, and the invariants checked
against the database afterwards. Used by tests/faults/test_netns_faults.py and
tests/faults/test_sentinel_failover.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import typing
import urllib.request
from collections.abc import Awaitable, Callable, Mapping, Sequence

from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from devservers import DaphneServer
from tests.support.cluster import Database
from tests.support.helpers import room_name, until
from tests.support.site import Served, open_ws


class Servers(typing.Protocol):
    """Two daphnes of the probe app and the cluster's database."""

    @property
    def d1(self) -> DaphneServer: ...
    @property
    def d2(self) -> DaphneServer: ...
    @property
    def db(self) -> Database: ...


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class Ended(typing.NamedTuple):
    """How a connection the client did not close ended: the close frame it got, or 1006 for none."""

    code: int
    reason: str


def ended(ws: ClientConnection) -> list[Ended]:
    """How the other end ended ``ws``: its close frame, or 1006 when none came (the TCP connection just
    ended); nothing when the client closed first."""
    protocol = ws.protocol
    if protocol.close_sent is not None and not protocol.close_rcvd_then_sent:
        return []
    frame = protocol.close_rcvd
    return [Ended(1006, "") if frame is None else Ended(frame.code, frame.reason)]


# A client's pause before it reconnects: the pacing of a real client's retries.
RECONNECT_PAUSE = 0.2


class ProbeClient:
    """A member of the probe room on one of ``servers`` (``home`` first); sends ``rate`` messages/s.

    ``connect`` holds extra arguments of every connection (``ssl`` behind a TLS proxy);
    ``resume=False`` reconnects without ``?since=`` (a client that cannot resume).
    """

    def __init__(
        self,
        name: str,
        servers: Sequence[Served],
        room: str,
        home: int,
        rate: float = 0,
        *,
        connect: Mapping[str, typing.Any] | None = None,
        resume: bool = True,
    ) -> None:
        self.name, self.servers, self.room, self.home, self.rate = name, list(servers), room, home, rate
        self.connect = dict(connect or {})
        self.resume = resume
        self.offline: list[float] = []  # seconds from each lost connection to the next hello
        self.replayed = 0  # saved messages caught up from history after a reconnection
        self._down_since: float | None = None
        self._since = 0
        self.seqs: list[int] = []
        self.payloads: dict[int, typing.Any] = {}
        self.epoch = ""
        self.resumes: list[dict[str, typing.Any]] = []
        self.errors: list[typing.Any] = []
        self.acked: set[int] = set()
        self.nacked: set[int] = set()
        self.sent = 0
        self.lost: set[int] = set()  # sent on a connection that ended before its answer
        self.connections = 0
        self.channel_id: str | None = None  # of the open connection, once it said hello
        self.closed_ids: list[str] = []
        self.ended: list[Ended] = []  # how each connection it did not close itself ended
        self.sending = rate > 0
        self._stop = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._task = asyncio.create_task(self._run(), name=f"probe-{name}")

    def path(self) -> str:
        if not self.resume:
            return f"/probe/{self.room}/?envelope=1"
        since = self.seqs[-1] if self.seqs else 0
        return f"/probe/{self.room}/?envelope=1&since={since}&epoch={self.epoch}"

    async def _run(self) -> None:
        server = self.home
        while not self._stop.is_set():
            try:
                self._since = self.seqs[-1] if self.seqs else 0
                options = {"open_timeout": 5, "close_timeout": 1, **self.connect}
                async with open_ws(self.servers[server], self.path(), **options) as ws:
                    self._ws = ws
                    self.connections += 1
                    await self._session(ws)
            # A proxy answers a handshake it could not place with an HTTP error (502, or
            # the 403 of a process that is shutting down): like a refused connection.
            except (OSError, TimeoutError, ConnectionClosed, InvalidHandshake) as exc:
                self.errors.append(repr(exc))
            finally:
                if self._ws is not None and not self._stop.is_set():
                    self.ended += ended(self._ws)
                self._ws = None
                self.lost |= self.unsettled()
                if self.channel_id is not None:
                    self.closed_ids.append(self.channel_id)
                    self.channel_id = None
                    self._down_since = time.monotonic()
            if self._stop.is_set():
                return
            server = (server + 1) % len(self.servers)  # as a load balancer would send it elsewhere
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), RECONNECT_PAUSE)

    async def _session(self, ws: ClientConnection) -> None:
        sender = asyncio.create_task(self._send(ws)) if self.rate else None
        try:
            async for raw in ws:
                if not self._frame(json.loads(raw)):
                    return  # the server could not join us: come back later
        finally:
            if sender is not None:
                sender.cancel()

    def _frame(self, frame: typing.Any) -> bool:
        if "seq" in frame:
            assert frame["seq"] is not None, f"{self.name}: an unsaved broadcast {frame}"
            self.seqs.append(frame["seq"])
            self.payloads[frame["seq"]] = frame["payload"]
            self.epoch = frame.get("epoch", self.epoch)
        elif frame.get("type") == "resume":
            self.resumes.append(frame)
            if frame.get("recovered") and self.connections > 1:
                self.replayed += max(0, int(frame["last_seq"]) - self._since)
        elif "hello" in frame:
            self.channel_id = frame["hello"]
            if self._down_since is not None:
                self.offline.append(time.monotonic() - self._down_since)
                self._down_since = None
        elif "ack" in frame:
            self.acked.add(frame["ack"])
        elif "nack" in frame:
            self.nacked.add(frame["nack"])
        else:
            self.errors.append(frame)
            return self.channel_id is not None
        return True

    async def _send(self, ws: ClientConnection) -> None:
        while self.channel_id is None:
            await asyncio.sleep(0.02)  # the hello comes first
        while self.sending:
            self.sent += 1
            await ws.send(json.dumps({"s": self.name, "n": self.sent}))
            await asyncio.sleep(1 / self.rate)  # the load's pace

    def unsettled(self) -> set[int]:
        """Messages sent and neither acknowledged nor refused (their connection was lost, or pending)."""
        return set(range(1, self.sent + 1)) - self.acked - self.nacked - self.lost

    async def leave(self) -> str | None:
        """Close this client for good (the ghost test); return the channel id it had."""
        channel = self.channel_id
        self._stop.set()
        if self._ws is not None:
            await self._ws.close()
        await self._task
        return channel

    async def stop(self) -> None:
        self._stop.set()
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        await asyncio.wait_for(self._task, 10)


async def round_trip(server: DaphneServer, room: str, *, timeout: float = 15.0) -> float:
    """Poll until a new client on ``server`` joins ``room`` and gets its own saved message back."""

    async def once() -> bool:
        try:
            async with open_ws(server, f"/probe/{room}/?envelope=1", open_timeout=3) as ws:
                hello = await _first(ws, lambda f: "hello" in f)
                await ws.send(json.dumps({"s": "healer", "n": 1, "at": hello["hello"]}))
                await _first(ws, lambda f: f.get("payload", {}).get("at") == hello["hello"])
                return True
        except (OSError, TimeoutError, ConnectionClosed):
            return False

    return await until(once, f"a saved round trip through {server.url}", timeout=timeout, poll=0.2)


async def _first(ws: ClientConnection, predicate: typing.Callable[[typing.Any], bool]) -> typing.Any:
    deadline = time.monotonic() + 3
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), max(deadline - time.monotonic(), 0.01)))
        if predicate(frame):
            return frame


def scrape(server: DaphneServer) -> Samples:
    """Every sample of the server's /metrics, by name and sorted labels (blocking: call in a thread)."""
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def settle(clients: Sequence[ProbeClient], db: Database, room: str, timeout: float = 20.0) -> int:
    """Stop sending, wait for every answer and for every client to reach the room's last seq; return it."""
    for client in clients:
        client.sending = False
    await until(
        lambda: not any(c.unsettled() for c in clients),
        "an answer to every message sent on a connection still open",
        timeout=timeout,
    )
    last = (await asyncio.to_thread(db.history, room) or [(0, None)])[-1][0]
    await until(
        lambda: all(c.seqs and c.seqs[-1] >= last for c in clients),
        f"every client to reach seq {last}",
        timeout=timeout,
    )
    return int(last)


def check_invariants(clients: Sequence[ProbeClient], rows: list[tuple[int, typing.Any]]) -> dict[str, int]:
    """Assert what the issue asks of saved traffic; return counts for the report."""
    seqs = [seq for seq, _ in rows]
    assert seqs == list(range(1, len(rows) + 1)), f"history has gaps: {seqs}"
    keys = [(payload["s"], payload["n"]) for _, payload in rows]
    assert len(keys) == len(set(keys)), f"saved twice: {sorted(k for k in keys if keys.count(k) > 1)}"
    saved = set(keys)
    for client in clients:
        lost = {n for n in client.acked if (client.name, n) not in saved}
        assert not lost, f"{client.name}: acknowledged and not saved: {sorted(lost)}"
        refused = {n for n in client.nacked if (client.name, n) in saved}
        assert not refused, f"{client.name}: refused (nack) and saved anyway: {sorted(refused)}"
        assert client.seqs == seqs, f"{client.name} saw a gap or a duplicate: {_diff(client.seqs, seqs)}"
        wrong = [seq for seq in seqs if client.payloads[seq] != rows[seq - 1][1]]
        assert not wrong, f"{client.name}: payloads differing from history at {wrong}"
        assert all(r["recovered"] for r in client.resumes), f"{client.name}: {client.resumes}"
    return {
        "saved": len(rows),
        "acked": sum(len(c.acked) for c in clients),
        "nacked": sum(len(c.nacked) for c in clients),
        "lost_connection": sum(len(c.lost - c.acked - c.nacked) for c in clients),
        "reconnects": sum(c.connections - 1 for c in clients),
    }


def _diff(got: list[int], want: list[int]) -> str:
    missing = sorted(set(want) - set(got))
    doubled = sorted({s for s in got if got.count(s) > 1})
    return f"missing {missing[:20]}, doubled {doubled[:20]}, out of order {got != sorted(got)}"


def total(samples: Samples, name: str) -> float:
    """A counter summed over its labels."""
    return sum(v for (n, _), v in samples.items() if n == name)


async def exercise(
    c: Servers,
    cut: Callable[[], Awaitable[None] | None],
    restore: Callable[[], Awaitable[None] | None],
    *,
    moved: Callable[[Samples, Samples], bool],
    watch: DaphneServer | None = None,
    hold: float,
    ghost_deadline: float,
    heal_within: float = 15.0,
    moved_within: float | None = None,
) -> dict[str, float]:
    """The workload around one fault on d1; every invariant checked; returns what was measured."""
    room = room_name("net")
    servers = [c.d1, c.d2]
    readers = [ProbeClient(f"r{n}", servers, room, n) for n in (0, 1)]
    senders = [ProbeClient(f"s{n}", servers, room, n, rate=5) for n in (0, 1)]
    ghost = ProbeClient("ghost", servers, room, 0)
    clients = [*readers, *senders]
    try:
        await until(lambda: all(len(s.acked) >= 3 for s in senders) and ghost.channel_id, "the load to run")
        watch = watch or c.d1
        before = await asyncio.to_thread(scrape, watch)
        started = time.monotonic()
        await _call(cut)
        gone = await ghost.leave()
        ghost_time = await until(
            lambda: asyncio.to_thread(lambda: gone not in {m for m, _ in c.db.members(room)}),
            "the closed socket's membership row to go",
            timeout=ghost_deadline,
        )
        await until(
            lambda: asyncio.to_thread(lambda: moved(before, scrape(watch))),
            f"{watch.url}/metrics to show the fault",
            timeout=hold if moved_within is None else moved_within,
        )
        # The fault's length (what is being simulated), not a wait for something to happen.
        await asyncio.sleep(max(0.0, started + hold - time.monotonic()))
        await _call(restore)
        heal = await round_trip(c.d1, room, timeout=heal_within)
        last = await settle(clients, c.db, room)
        counts = check_invariants(clients, await asyncio.to_thread(c.db.history, room))
        live = {client.channel_id for client in clients}
        await until(
            lambda: asyncio.to_thread(lambda: {m for m, _ in c.db.members(room)} == live),
            "membership rows to be the live sockets' exactly",
            timeout=ghost_deadline + heal_within,
        )
        print(f"{room}: last seq {last}, {counts}, ghost gone {ghost_time:.1f}s, healed {heal:.1f}s")
        print(f"{watch.url} counters moved: {moved_counters(before, await asyncio.to_thread(scrape, watch))}")
        return {"ghost": ghost_time, "heal": heal, **counts}
    finally:
        for client in [*clients, ghost]:
            await client.stop()


def moved_counters(before: Samples, after: Samples) -> dict[str, float]:
    """The nexios_compat counters that changed, for the test's output (what an operator would see)."""
    return {
        f"{name}{dict(labels) or ''}": after[name, labels] - before.get((name, labels), 0.0)
        for name, labels in after
        if name.startswith("nexios_compat_")
        and name.endswith("_total")
        and after[name, labels] != before.get((name, labels), 0.0)
    }


async def _call(action: Callable[[], Awaitable[None] | None]) -> None:
    result = action()
    if result is not None:
        await result


def grew(name: str, **labels: str) -> Callable[[Samples, Samples], bool]:
    if labels:
        return lambda before, now: value(now, name, **labels) > value(before, name, **labels)
    return lambda before, now: total(now, name) > total(before, name)
