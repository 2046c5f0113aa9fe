"""The connection sweep's client: one process holding its share of the sweep's sockets.

``bench.scenarios.scale`` starts several of these (``ScaleClients``), each an asyncio loop
with the ``websockets`` client, and drives them by commands over a pipe:

- ``grow``: open sockets at a steady rate until this client holds its target;
- ``hold``: for a window, 1% of the sockets (``senders``) send to their group room at
  ``send_rate`` messages/s each, ``churn`` sockets/s are closed and as many opened, and a
  few presence probes time how long a new member takes to show up in a watcher's presence;
- ``stats``: sockets held and lost, RSS and CPU seconds of this process.

``bench.load.scaleclients`` starts the processes and carries the commands.

Every socket binds a source address of its own client in 127.0.0.0/8 (8 per client), so
the 28k ephemeral ports of one address do not run out. Receivers drain every frame; every
tenth socket (and every sender) parses what it gets: the latency, and each sender's own
messages coming back (also counted in the latency).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import resource
import time
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

CONNECT_KW: dict[str, Any] = {
    "compression": None,
    "ping_interval": None,  # daphne pings (every 20 s); the client answers
    "ping_timeout": None,
    "close_timeout": 5,
    "open_timeout": 60,
    "max_queue": 256,
}
ADDRESSES_PER_CLIENT = 8
LATENCY_EVERY = 10  # every tenth socket parses the broadcasts it receives
HANDSHAKES_IN_FLIGHT = 200  # per client; daphne listens with a backlog of 4096 here
PROBE_TIMEOUT = 30.0
JOIN_TIMEOUT = 60.0
CHURN_IN_FLIGHT = 50  # per client: churn beyond what the servers join is not asked for


@dataclass(frozen=True)
class ClientSpec:
    """What one client process connects to: the servers, the rooms, its source addresses."""

    index: int
    servers: tuple[str, ...]  # ws://127.0.0.1:PORT, one per daphne
    groups: int

    def address(self, n: int) -> str:
        """The source address of this client's ``n``-th socket (127.0.<1+8i+k>.1)."""
        return f"127.0.{1 + self.index * ADDRESSES_PER_CLIENT + n % ADDRESSES_PER_CLIENT}.1"


class _Sock:
    __slots__ = (
        "closing",
        "group",
        "joined",
        "n",
        "own",
        "sample",
        "sender",
        "server",
        "user",
        "watch",
        "ws",
    )

    def __init__(self, n: int, user: str, group: int, server: int) -> None:
        self.n = n
        self.user = user
        self.group = group
        self.server = server
        self.ws: ClientConnection | None = None
        self.sample = n % LATENCY_EVERY == 0
        self.sender = False
        self.closing = False
        self.own = 0  # own messages that came back
        self.watch: dict[str, float] = {}  # presence key -> monotonic time it was looked for
        # set by the group room's presence_state: the server has finished joining this socket
        self.joined: asyncio.Future[None] | None = None


class ScaleClient:
    """One client process's sockets and the work the controller asks of them."""

    def __init__(self, spec: ClientSpec) -> None:
        self.spec = spec
        self.socks: dict[int, _Sock] = {}
        self.next_n = 0
        self.lost = 0  # sockets the server ended that we did not close
        self.lost_reasons: dict[str, int] = {}
        self.failed = 0
        self.fail_reasons: dict[str, int] = {}
        self.latencies: list[float] = []
        self.frames = 0
        self.converged: dict[str, float] = {}  # presence key -> seconds
        self.probe_started: dict[str, float] = {}
        self.slots = asyncio.Semaphore(HANDSHAKES_IN_FLIGHT)
        self.tasks: set[asyncio.Task[Any]] = set()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _new(self, group: int | None = None, user: str | None = None, server: int | None = None) -> _Sock:
        n = self.next_n
        self.next_n += 1
        nserv = len(self.spec.servers)
        group = (self.spec.index * 7919 + n) % self.spec.groups if group is None else group
        server = (self.spec.index + n) % nserv if server is None else server
        return _Sock(n, user or f"c{self.spec.index}-{n}", group, server)

    async def _open(self, sock: _Sock) -> bool:
        port = self.spec.servers[sock.server].rsplit(":", 1)[1]
        url = f"{self.spec.servers[sock.server]}/ws/scale/{sock.group}/{sock.user}/"
        async with self.slots:
            try:
                sock.ws = await connect(
                    url,
                    origin=f"http://127.0.0.1:{port}",  # type: ignore[arg-type]
                    local_addr=(self.spec.address(sock.n), 0),
                    **CONNECT_KW,
                )
            except Exception as exc:
                self.failed += 1
                why = type(exc).__name__
                self.fail_reasons[why] = self.fail_reasons.get(why, 0) + 1
                return False
            sock.joined = asyncio.get_running_loop().create_future()
            self._spawn(self._read(sock))
            try:  # a socket counts once joined: its group room's presence_state came
                await asyncio.wait_for(asyncio.shield(sock.joined), JOIN_TIMEOUT)
            except (TimeoutError, ConnectionClosed) as exc:
                self.failed += 1
                why = f"join: {type(exc).__name__}"
                self.fail_reasons[why] = self.fail_reasons.get(why, 0) + 1
                sock.closing = True
                sock.ws.transport.abort()
                return False
        self.socks[sock.n] = sock
        return True

    async def _read(self, sock: _Sock) -> None:
        ws = sock.ws
        assert ws is not None
        try:
            async for msg in ws:
                self.frames += 1
                if sock.joined is not None and isinstance(msg, str) and '"presence_state"' in msg[:40]:
                    if f'"g-{sock.group}"' in msg:
                        sock.joined.set_result(None)
                        sock.joined = None
                    continue
                if sock.watch and isinstance(msg, str) and '"presence_' in msg[:40]:
                    self._presence(sock, msg)
                elif (sock.sample or sock.sender) and isinstance(msg, str) and '"ts"' in msg:
                    self._broadcast(sock, msg)
        except ConnectionClosed:
            pass
        if sock.joined is not None and not sock.joined.done():
            sock.joined.set_exception(ConnectionClosed(ws.protocol.close_rcvd, ws.protocol.close_sent))
        self.socks.pop(sock.n, None)
        if not sock.closing:
            self.lost += 1
            rcvd = ws.protocol.close_rcvd
            why = f"{rcvd.code} {rcvd.reason}"[:60] if rcvd is not None else "no close frame"
            self.lost_reasons[why] = self.lost_reasons.get(why, 0) + 1

    def _broadcast(self, sock: _Sock, msg: str) -> None:
        now = time.time()
        try:
            obj = json.loads(msg)
        except ValueError:
            return
        if isinstance(obj, dict) and isinstance(obj.get("payload"), dict):
            obj = obj["payload"]
        if not isinstance(obj, dict) or not isinstance(obj.get("ts"), float):
            return
        own = obj.get("from") == sock.user
        if sock.sample or own:  # a sender is a member of its room too: its echo is a delivery
            self.latencies.append((now - obj["ts"]) * 1000)
        if own:
            sock.own += 1

    def _presence(self, sock: _Sock, msg: str) -> None:
        now = time.monotonic()
        try:
            obj = json.loads(msg)
        except ValueError:
            return
        if obj.get("room") != f"g-{sock.group}":
            return
        keys = obj.get("joins") if obj.get("type") == "presence_diff" else obj.get("state")
        for key in list(sock.watch):
            if keys and key in keys and key in self.probe_started:
                self.converged[key] = max(0.0, now - self.probe_started[key])
                del sock.watch[key]

    async def grow(self, target: int, rate: float, max_seconds: float) -> dict[str, Any]:
        """Open sockets at ``rate``/s until ``target`` are held, the failures pile up or time is up."""
        t0 = time.monotonic()
        failed0 = self.failed
        opened = 0
        pending: list[asyncio.Task[bool]] = []
        need = target - len(self.socks)
        for i in range(max(0, need)):
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            pending.append(asyncio.ensure_future(self._open(self._new())))
            if self.failed - failed0 > max(20, need // 50) or time.monotonic() - t0 > max_seconds:
                break  # more than 2% refused, or too slow: the step has failed, stop knocking
        results = await asyncio.gather(*pending)
        opened = sum(results)
        elapsed = time.monotonic() - t0
        return {
            "opened": opened,
            "failed": self.failed - failed0,
            "seconds": round(elapsed, 2),
            "held": len(self.socks),
        }

    async def hold(
        self, seconds: float, sender_fraction: float, send_rate: float, churn: float, probes: int
    ) -> dict[str, Any]:
        """A measured window: senders send, churn closes and reopens, probes time presence."""
        self.latencies = []
        self.frames = 0
        lost0, failed0 = self.lost, self.failed
        socks = list(self.socks.values())
        random.Random(self.spec.index).shuffle(socks)
        senders = socks[: max(1, round(len(socks) * sender_fraction))] if sender_fraction > 0 else []
        for s in senders:
            s.sender, s.own = True, 0
        sent = {s.n: 0 for s in senders}
        stop = time.monotonic() + seconds
        churned = [0, 0]  # closed, reopened

        async def send_loop() -> None:
            tick = 0.05
            seq = 0
            while time.monotonic() < stop and senders:
                start = time.monotonic()
                for s in senders:  # each sender sends send_rate/s, spread over the ticks
                    if random.random() < send_rate * tick and s.ws is not None and s.n in self.socks:
                        seq += 1
                        frame = json.dumps({"type": "message", "seq": seq, "ts": time.time(), "from": s.user})
                        with contextlib.suppress(ConnectionClosed):
                            await s.ws.send(frame)
                            sent[s.n] += 1
                await asyncio.sleep(max(0.0, tick - (time.monotonic() - start)))

        replacing = [0]

        async def replace(old: _Sock) -> None:
            replacing[0] += 1
            try:
                await replace_one(old)
            finally:
                replacing[0] -= 1

        async def replace_one(old: _Sock) -> None:
            old.closing = True
            if old.ws is not None:
                with contextlib.suppress(Exception):
                    await old.ws.close()
            churned[0] += 1
            if await self._open(self._new(group=old.group)):
                churned[1] += 1

        async def churn_loop() -> None:
            tick = 0.1
            owed = 0.0
            while time.monotonic() < stop and churn > 0:
                owed = min(owed + churn * tick, churn)  # what could not be asked is not owed forever
                quiet = [s for s in self.socks.values() if not (s.sender or s.watch or s.closing)]
                while owed >= 1 and quiet and replacing[0] < CHURN_IN_FLIGHT:
                    owed -= 1
                    self._spawn(replace(quiet.pop(random.randrange(len(quiet)))))
                await asyncio.sleep(tick)

        async def probe_loop() -> None:
            if probes <= 0:
                return
            gap = seconds / (probes + 1)
            for k in range(probes):
                await asyncio.sleep(gap)
                watchers = [s for s in self.socks.values() if not (s.sender or s.closing)]
                if not watchers:
                    return
                w = random.choice(watchers)
                key = f"p{self.spec.index}-{self.next_n}"
                w.watch[key] = time.monotonic()
                other = (w.server + 1 + k % max(1, len(self.spec.servers) - 1)) % len(self.spec.servers)
                sock = self._new(group=w.group, user=key, server=other)
                self.probe_started[key] = time.monotonic()
                self._spawn(self._probe_open(sock, key))

        cpu0 = os.times()
        await asyncio.gather(send_loop(), churn_loop(), probe_loop(), asyncio.sleep(seconds))
        await asyncio.sleep(2.0)  # the last sends' deliveries
        deadline = time.monotonic() + PROBE_TIMEOUT
        while any(k not in self.converged for k in self.probe_started) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        cpu1 = os.times()
        for s in senders:
            s.sender = False
        probe_times = [self.converged[k] * 1000 for k in self.probe_started if k in self.converged]
        result = {
            "senders": len(senders),
            "sent": sum(sent.values()),
            "echo_missing": sum(max(0, sent[s.n] - s.own) for s in senders if s.n in self.socks),
            "latency_ms": self.latencies,
            "frames": self.frames,
            "churn_closed": churned[0],
            "churn_opened": churned[1],
            "lost": self.lost - lost0,
            "failed": self.failed - failed0,
            "probes": len(self.probe_started),
            "presence_ms": probe_times,
            "unconverged": len(self.probe_started) - len(probe_times),
            "cpu_seconds": round(cpu1.user + cpu1.system - cpu0.user - cpu0.system, 2),
            "held": len(self.socks),
        }
        self.probe_started.clear()
        self.converged.clear()
        return result

    async def _probe_open(self, sock: _Sock, key: str) -> None:
        if await self._open(sock):
            self.probe_started[key] = time.monotonic()  # from the completed handshake
        else:
            self.probe_started.pop(key, None)

    def stats(self) -> dict[str, Any]:
        """Sockets held, lost and failed so far; this process's RSS and CPU seconds."""
        usage = resource.getrusage(resource.RUSAGE_SELF)
        with open("/proc/self/statm") as f:
            rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        return {
            "held": len(self.socks),
            "lost": self.lost,
            "lost_reasons": dict(self.lost_reasons),
            "failed": self.failed,
            "fail_reasons": dict(self.fail_reasons),
            "rss": rss,
            "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
        }

    async def close(self) -> None:
        """Abort every socket (the servers are stopped next; no need to wait for closes)."""
        for s in list(self.socks.values()):
            s.closing = True
            if s.ws is not None:
                s.ws.transport.abort()
        self.socks.clear()
