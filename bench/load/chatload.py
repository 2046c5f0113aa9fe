"""Chat-site load: many rooms of a few members, every member sending at a steady rate.

One ``ChatLoad`` opens ``rooms`` x ``room_size`` sockets (a room's members spread round-robin
over the server's processes), checks that every member of every room is joined, then runs
steps: ``step(rate, seconds)`` sends ``rate`` messages/s in total, round-robin over all
members (so each member sends at ``rate / members`` per second), waits for every member of
the sender's room to receive each message, and reports the achieved send rate, latency
percentiles and what did not arrive. Messages of earlier steps that arrive late are ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from array import array
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection

from bench.load.loadgen import DEFAULT_CONTENT, Origins, Urls, close_all, find_seq_ts, open_idle

STEP_SEQ = 10_000_000  # seq = step * STEP_SEQ + n: tells this step's messages from late ones


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return round(values[min(len(values) - 1, round(q * (len(values) - 1)))], 3)


class ChatLoad:
    """The sockets of a chat site's rooms, and the steps run over them; see the module doc."""

    def __init__(self, urls_for: Callable[[str], Urls], origin: Origins, rooms: int, room_size: int) -> None:
        self.urls_for = urls_for
        self.origin = origin
        self.n_rooms = rooms
        self.room_size = room_size
        self.sockets: list[ClientConnection] = []
        self.readers: list[asyncio.Task[None]] = []
        self.step_no = 0
        self.received = 0  # deliveries of the current step
        self.latencies = array("d")
        self.warm: set[int] = set()  # members that got a warm-up message
        self.closed = 0  # sockets the server closed
        self.progress = asyncio.Event()

    async def open(self, warmup_timeout: float = 30.0) -> None:
        """Connect every member, start the readers, and wait until every member is joined."""
        for r in range(self.n_rooms):
            url = self.urls_for(f"chat-{r}-{time.monotonic_ns() % 10**9}")
            socks, errors = await open_idle(url, self.room_size, origin=self.origin)
            self.sockets += socks
            if errors:
                raise ConnectionError(f"{len(errors)} of {self.room_size} failed in room {r}: {errors[0]}")
        self.readers = [asyncio.create_task(self._read(i, ws)) for i, ws in enumerate(self.sockets)]
        deadline = time.monotonic() + warmup_timeout
        while len(self.warm) < len(self.sockets):
            if time.monotonic() > deadline:
                raise TimeoutError(f"warm-up: {len(self.sockets) - len(self.warm)} members never joined")
            for first in range(0, len(self.sockets), self.room_size):
                room = range(first, first + self.room_size)
                if not all(i in self.warm for i in room):
                    msg = {"type": "message", "content": "warm-up", "seq": -1, "ts": time.time()}
                    await self.sockets[first].send(json.dumps(msg))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_warm(), 0.5)

    async def _all_warm(self) -> None:
        while len(self.warm) < len(self.sockets):
            self.progress.clear()
            await self.progress.wait()

    async def _read(self, idx: int, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                now = time.time()
                found = find_seq_ts(json.loads(raw))
                if found is None:
                    continue
                seq, ts = found
                if seq < 0:
                    self.warm.add(idx)
                elif seq // STEP_SEQ == self.step_no:
                    self.received += 1
                    if ts is not None:
                        self.latencies.append((now - ts) * 1000.0)
                self.progress.set()
        except Exception:  # a dropped connection is counted, the step reports it
            pass
        finally:
            self.closed += 1
            self.progress.set()

    async def send_for(self, rate: float, seconds: float) -> int:
        """Send ``rate`` messages/s round-robin over all members for ``seconds``; returns the count."""
        base = self.step_no * STEP_SEQ
        n_members = len(self.sockets)
        sent = 0
        t0 = time.perf_counter()
        while (elapsed := time.perf_counter() - t0) < seconds:
            due = int(elapsed * rate) - sent
            for _ in range(due):
                msg = {"type": "message", "content": DEFAULT_CONTENT, "seq": base + sent, "ts": time.time()}
                await self.sockets[sent % n_members].send(json.dumps(msg))
                sent += 1
            await asyncio.sleep(0.002)
        return sent

    async def drain(self, expected: int, timeout: float) -> bool:
        """Wait until ``expected`` deliveries of this step arrived (False after ``timeout`` s)."""
        deadline = time.monotonic() + timeout
        while self.received < expected:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.progress.wait(), left)
        return True

    def next_step(self) -> None:
        """Start counting a new step: earlier messages still in flight are ignored from now on."""
        self.step_no += 1
        self.received = 0
        self.latencies = array("d")

    async def step(
        self,
        rate: float,
        seconds: float,
        drain_timeout: float = 2.0,
        probes: dict[str, Any] | None = None,
        counters: Callable[[], dict[str, float]] | None = None,
    ) -> dict[str, Any]:
        """One step at ``rate`` messages/s in total: send, drain, and summarise.

        ``probes`` are CPU-seconds readers (reported as % of a core); ``counters``
        reads cumulative counts (reported as the step's increase, under ``counts``).
        """
        self.next_step()
        probes = probes or {}
        counted0 = counters() if counters is not None else {}
        cpu0 = {k: p() for k, p in probes.items()}
        t0 = time.perf_counter()
        sent = await self.send_for(rate, seconds)
        send_s = time.perf_counter() - t0
        drained = await self.drain(sent * self.room_size, drain_timeout)
        wall = time.perf_counter() - t0
        lat = sorted(self.latencies)
        out: dict[str, Any] = {
            "offered_per_s": round(rate, 1),
            "sent_per_s": round(sent / send_s, 1),
            "sent": sent,
            "expected": sent * self.room_size,
            "delivered": self.received,
            "drained": drained,
            "p50_ms": _percentile(lat, 0.5),
            "p99_ms": _percentile(lat, 0.99),
            "connections_closed": self.closed,
        }
        for name, probe in probes.items():
            out[f"{name}_cpu_pct"] = round(100 * (probe() - cpu0[name]) / wall, 1)
        if counters is not None:
            out["counts"] = {k: round(v - counted0[k]) for k, v in counters().items()}
        return out

    async def close(self) -> None:
        """Stop the readers and close every socket."""
        for task in self.readers:
            task.cancel()
        await asyncio.gather(*self.readers, return_exceptions=True)
        await close_all(self.sockets)
