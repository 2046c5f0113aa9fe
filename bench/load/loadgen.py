"""Room broadcast load generator (asyncio + the ``websockets`` client, one process).

    python -m bench.load.loadgen --url ws://127.0.0.1:8000/ws/bench/room1/ \
        --members 100 --messages 500 --rate 0

Opens ``members`` sockets to one room URL, waits until every member is joined (the publisher,
member 0, sends warm-up messages until each member has received one), then the publisher
sends ``messages`` JSON text frames ``{"type": "message", "content": ..., "seq": i, "ts": t}``
at ``rate`` per second (0: as fast as the window allows). At most ``window`` messages may be
ahead of the slowest member, so a saturated server is measured at its delivery rate and not
at the depth of its buffers.

Several URLs (``--url`` repeated, or a list to ``run_load``/``open_idle``) spread the
members round-robin over them: member i connects to ``urls[i % len(urls)]``, so the
publisher is on the first. This is how a room served by several server processes (each on
its own port, one channel layer) is measured; the room name must be the same in every URL.
An origin may be a list too, one per URL (a same-origin check wants each server's own).

Every member checks that it got each ``seq`` exactly once and in order. The server may wrap
the sender's object: ``seq``/``ts`` are looked for at the top level first, then anywhere in
the received JSON (nested objects, lists, or JSON-encoded strings).

The result (``run_load`` / ``main``) is a dict: ``delivered_per_s`` (messages received by all
members together per second, i.e. members x messages / elapsed when nothing is lost),
``p50_ms``/``p99_ms`` latency (receive time - ``ts``), and error counts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from array import array
from collections.abc import Callable, Sequence
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Origin

from devservers import raise_nofile_limit

DEFAULT_WINDOW = 200
DEFAULT_CONTENT = "x" * 64
CONNECT_CONCURRENCY = 50  # daphne/Twisted listens with backlog=50: more SYNs get dropped
CONNECT_KW: dict[str, Any] = {
    "compression": None,  # no permessage-deflate: it would dominate CPU and memory/conn
    "max_size": 2**22,
    "ping_interval": None,
    "ping_timeout": None,
    "close_timeout": 2,
    "open_timeout": 60,
    "max_queue": 64,
}
_WRAP_KEYS = ("payload", "message", "data", "content", "event", "body")


def _holder(obj: Any, depth: int = 0) -> dict[str, Any] | None:
    """The (possibly nested) dict that carries an integer ``seq``, or None."""
    if isinstance(obj, dict):
        seq = obj.get("seq")
        if isinstance(seq, int) and not isinstance(seq, bool):
            return obj
        if depth > 8:
            return None
        for key in _WRAP_KEYS:  # the usual wrappers first, cheaply
            if key in obj:
                found = _holder(obj[key], depth + 1)
                if found is not None:
                    return found
        for key, value in obj.items():
            if key not in _WRAP_KEYS and isinstance(value, (dict, list, str)):
                found = _holder(value, depth + 1)
                if found is not None:
                    return found
    elif isinstance(obj, list) and depth <= 8:
        for value in obj:
            found = _holder(value, depth + 1)
            if found is not None:
                return found
    elif isinstance(obj, str) and depth > 0 and obj[:1] in "{[" and '"seq"' in obj:
        try:
            return _holder(json.loads(obj), depth + 1)
        except ValueError:
            return None
    return None


def find_seq_ts(obj: Any) -> tuple[int, float | None] | None:
    """``(seq, ts)`` from a delivered JSON object, wherever the server put them."""
    holder = _holder(obj)
    if holder is None:
        return None
    ts = holder.get("ts")
    return holder["seq"], (float(ts) if isinstance(ts, (int, float)) else None)


Urls = str | Sequence[str]
Origins = str | Sequence[str | None] | None


def _spread(url: Urls, origin: Origins) -> list[tuple[str, str | None]]:
    """``[(url, origin), ...]``: one entry per server a member may connect to (round-robin)."""
    urls = [url] if isinstance(url, str) else list(url)
    if not urls:
        raise ValueError("need at least one URL")
    if origin is None or isinstance(origin, str):
        origins: list[str | None] = [origin] * len(urls)
    else:
        origins = list(origin)
        if len(origins) != len(urls):
            raise ValueError(f"{len(origins)} origins for {len(urls)} URLs")
    return list(zip(urls, origins, strict=True))


def _percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    idx = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[idx]


class _Member:
    __slots__ = (
        "dups",
        "error",
        "expected",
        "idx",
        "missing",
        "non_json",
        "out_of_order",
        "received",
        "unrelated",
        "warm",
        "ws",
    )

    def __init__(self, idx: int, ws: ClientConnection) -> None:
        self.idx = idx
        self.ws = ws
        self.expected = 0  # next seq this member should get
        self.received = 0  # distinct seqs received
        self.missing: set[int] = set()  # skipped seqs not (yet) received
        self.dups = 0
        self.out_of_order = 0
        self.non_json = 0
        self.unrelated = 0  # JSON frames without a seq (server hellos etc.): ignored
        self.warm = False
        self.error: str | None = None


class LoadRun:
    """One load run against one room; see the module docstring."""

    def __init__(
        self,
        url: Urls,
        members: int,
        messages: int,
        rate: float = 0.0,
        window: int = DEFAULT_WINDOW,
        content: str = DEFAULT_CONTENT,
        stall_timeout: float = 10.0,
        max_seconds: float | None = None,
        duration: float | None = None,
        connect_concurrency: int = CONNECT_CONCURRENCY,
        warmup_timeout: float = 30.0,
        cpu_probes: dict[str, Callable[[], float]] | None = None,
        origin: Origins = None,
    ) -> None:
        if members < 1 or messages < 0:
            raise ValueError("need members >= 1 and messages >= 0")
        self.url = url
        # member i connects to targets[i % len(targets)]; member 0 (the publisher) to the first
        self.targets = _spread(url, origin)
        self.n = members
        self.m = messages
        self.rate = rate
        self.window = max(1, window)
        self.content = content
        self.stall_timeout = stall_timeout
        self.max_seconds = max_seconds
        self.duration = duration
        self.connect_concurrency = connect_concurrency
        self.warmup_timeout = warmup_timeout
        # name -> cumulative CPU seconds; sampled around the publish+drain phase and
        # reported as "<name>_cpu_pct" (% of one core). "client" is this process.
        self.cpu_probes: dict[str, Callable[[], float]] = {"client": _own_cpu_seconds}
        self.cpu_probes.update(cpu_probes or {})

        self.members: list[_Member] = []
        self.passed = array("i", bytes(4 * messages))  # members past each seq
        self.frontier = 0  # every member is past all seqs < frontier
        self.progress = asyncio.Event()
        self.warm_count = 0
        self.all_warm = asyncio.Event()
        self.latencies = array("d")
        self.t_last_recv = 0.0
        self.sent = 0
        self.window_waits = 0
        self.errors: list[str] = []
        self.finished = False

    # -- receiving ---------------------------------------------------------------------------
    def _advance(self, start: int, stop: int) -> None:
        passed = self.passed
        for k in range(start, stop):
            passed[k] += 1
        moved = False
        while self.frontier < self.m and passed[self.frontier] >= self.n:
            self.frontier += 1
            moved = True
        if moved:
            self.progress.set()

    async def _reader(self, mem: _Member) -> None:
        latencies = self.latencies
        m = self.m
        try:
            async for raw in mem.ws:
                now = time.time()
                try:
                    obj = json.loads(raw)
                except ValueError:
                    mem.non_json += 1
                    continue
                found = find_seq_ts(obj)
                if found is None:
                    mem.unrelated += 1
                    continue
                seq, ts = found
                if seq < 0:  # warm-up
                    if not mem.warm:
                        mem.warm = True
                        self.warm_count += 1
                        if self.warm_count >= self.n:
                            self.all_warm.set()
                    continue
                if seq >= m:
                    mem.unrelated += 1
                    continue
                if ts is not None:
                    latencies.append((now - ts) * 1000.0)
                self.t_last_recv = now
                exp = mem.expected
                if seq == exp:
                    mem.received += 1
                    mem.expected = exp + 1
                    self._advance(exp, exp + 1)
                elif seq > exp:
                    mem.missing.update(range(exp, seq))
                    mem.received += 1
                    mem.expected = seq + 1
                    self._advance(exp, seq + 1)
                elif seq in mem.missing:
                    mem.missing.discard(seq)
                    mem.received += 1
                    mem.out_of_order += 1
                else:
                    mem.dups += 1
        except Exception as exc:  # connection dropped by the server, protocol error...
            mem.error = f"{type(exc).__name__}: {exc}"
        finally:
            if not self.finished:
                if mem.error is None:
                    mem.error = "connection closed by the server"
                # A dead member must not hold the window or the drain: count it as past
                # everything (what it never got is counted as missing in the summary).
                if mem.expected < m:
                    self._advance(mem.expected, m)
                if not mem.warm:
                    mem.warm = True
                    self.warm_count += 1
                    if self.warm_count >= self.n:
                        self.all_warm.set()

    # -- phases ------------------------------------------------------------------------------
    async def _connect_all(self) -> list[ClientConnection]:
        sem = asyncio.Semaphore(self.connect_concurrency)

        async def one(i: int) -> ClientConnection:
            url, origin = self.targets[i % len(self.targets)]
            async with sem:
                last: Exception | None = None
                for attempt in range(3):
                    try:
                        return await connect(url, origin=_origin(origin), **CONNECT_KW)
                    except (OSError, TimeoutError) as exc:
                        last = exc
                        await asyncio.sleep(0.2 * (attempt + 1))
                assert last is not None
                raise last

        results = await asyncio.gather(*(one(i) for i in range(self.n)), return_exceptions=True)
        sockets = [r for r in results if isinstance(r, ClientConnection)]
        failures = [r for r in results if not isinstance(r, ClientConnection)]
        if failures:
            await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
            first = failures[0]
            raise ConnectionError(
                f"{len(failures)}/{self.n} connections failed; first: {type(first).__name__}: {first}"
            )
        return sockets

    async def _warm_up(self, pub: ClientConnection) -> bool:
        deadline = time.monotonic() + self.warmup_timeout
        attempt = 0
        while time.monotonic() < deadline:
            attempt += 1
            msg = {"type": "message", "content": "warm-up", "seq": -attempt, "ts": time.time()}
            await pub.send(json.dumps(msg))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.all_warm.wait(), 1.0)
            if self.all_warm.is_set():
                return True
        return False

    async def _publish(self, pub: ClientConnection) -> None:
        dumps = json.dumps
        content = self.content
        rate = self.rate
        t0 = time.perf_counter()
        stop_at = t0 + self.max_seconds if self.max_seconds else None
        end_at = t0 + self.duration if self.duration else None
        for i in range(self.m):
            while i - self.frontier >= self.window:
                self.window_waits += 1
                self.progress.clear()
                before = self.frontier
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.progress.wait(), self.stall_timeout)
                if self.frontier == before:
                    self.errors.append(f"stalled: no member progress for {self.stall_timeout:g}s at seq {i}")
                    return
            if rate > 0:
                delay = t0 + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            if end_at is not None and time.perf_counter() > end_at:
                return  # a duration-bound run: stopping early is the plan, not an error
            if stop_at is not None and time.perf_counter() > stop_at:
                self.errors.append(f"truncated: max_seconds reached after {i} messages")
                return
            await pub.send(dumps({"type": "message", "content": content, "seq": i, "ts": time.time()}))
            self.sent = i + 1

    async def _drain(self) -> None:
        """Wait until every member is past every sent message (or nothing moves)."""
        while self.frontier < self.sent:
            self.progress.clear()
            before = self.frontier
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.progress.wait(), self.stall_timeout)
            if self.frontier == before:
                self.errors.append(
                    f"stalled: no member progress for {self.stall_timeout:g}s while draining "
                    f"at seq {self.frontier}/{self.sent}"
                )
                return

    async def run(self) -> dict[str, Any]:
        raise_nofile_limit()
        result: dict[str, Any] = {
            "url": self.url,
            "members": self.n,
            "messages": self.m,
            "rate": self.rate,
            "window": self.window,
        }
        t_conn = time.perf_counter()
        try:
            sockets = await self._connect_all()
        except Exception as exc:
            result.update(ok=False, error=f"connect: {exc}", errors=1, delivered=0)
            return result
        result["connect_s"] = round(time.perf_counter() - t_conn, 3)
        self.members = [_Member(i, ws) for i, ws in enumerate(sockets)]
        readers = [asyncio.create_task(self._reader(mem)) for mem in self.members]
        pub = sockets[0]
        try:
            if not await self._warm_up(pub):
                cold = sum(1 for mem in self.members if not mem.warm)
                self.errors.append(f"warm-up: {cold}/{self.n} members never got a message")
            else:
                cpu0 = {name: probe() for name, probe in self.cpu_probes.items()}
                t_start = time.time()
                await self._publish(pub)
                await self._drain()
                t_end = self.t_last_recv if self.frontier >= self.sent else time.time()
                wall = max(1e-9, time.time() - t_start)
                for name, probe in self.cpu_probes.items():
                    result[f"{name}_cpu_pct"] = round(100 * (probe() - cpu0[name]) / wall, 1)
                elapsed = max(1e-9, t_end - t_start)
                result["elapsed_s"] = round(elapsed, 4)
        finally:
            self.finished = True
            for task in readers:
                task.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
            await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
        return self._summarise(result)

    def _summarise(self, result: dict[str, Any]) -> dict[str, Any]:
        delivered = sum(mem.received for mem in self.members)
        missing = sum(len(mem.missing) + max(0, self.sent - mem.expected) for mem in self.members)
        dups = sum(mem.dups for mem in self.members)
        ooo = sum(mem.out_of_order for mem in self.members)
        non_json = sum(mem.non_json for mem in self.members)
        conn_errors = [mem.error for mem in self.members if mem.error]
        lat = sorted(self.latencies)
        elapsed = result.get("elapsed_s")
        errors = missing + dups + ooo + non_json + len(conn_errors) + len(self.errors)
        result.update(
            ok=errors == 0 and elapsed is not None,
            sent=self.sent,
            expected=self.sent * self.n,
            delivered=delivered,
            delivered_per_s=round(delivered / elapsed, 1) if elapsed else None,
            sent_per_s=round(self.sent / elapsed, 1) if elapsed else None,
            p50_ms=_round(_percentile(lat, 0.50)),
            p99_ms=_round(_percentile(lat, 0.99)),
            max_ms=_round(lat[-1] if lat else None),
            missing=missing,
            duplicates=dups,
            out_of_order=ooo,
            non_json=non_json,
            unrelated_frames=sum(mem.unrelated for mem in self.members),
            connection_errors=len(conn_errors),
            errors=errors,
            window_waits=self.window_waits,
        )
        notes = list(self.errors)
        if conn_errors:
            notes.append(f"{len(conn_errors)} member connection errors; first: {conn_errors[0]}")
        if notes:
            result["error"] = "; ".join(notes)
        return result


def _origin(value: str | None) -> Origin | None:
    return None if value is None else Origin(value)


def _own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


async def run_load(
    url: Urls,
    members: int,
    messages: int,
    rate: float = 0.0,
    window: int = DEFAULT_WINDOW,
    **kwargs: Any,
) -> dict[str, Any]:
    """Run one load test (see the module docstring) and return its result dict.

    ``url`` may be a list: members are spread over it round-robin (``origin`` may then be a
    list of the same length, one Origin per URL).
    """
    return await LoadRun(url, members, messages, rate, window, **kwargs).run()


async def open_idle(
    url: Urls, count: int, concurrency: int = CONNECT_CONCURRENCY, origin: Origins = None
) -> tuple[list[ClientConnection], list[str]]:
    """Open ``count`` idle sockets to ``url`` (a list: round-robin); returns (sockets, errors)."""
    raise_nofile_limit()
    sem = asyncio.Semaphore(concurrency)
    targets = _spread(url, origin)

    async def one(i: int) -> ClientConnection:
        target_url, target_origin = targets[i % len(targets)]
        async with sem:
            return await connect(target_url, origin=_origin(target_origin), **CONNECT_KW)

    results = await asyncio.gather(*(one(i) for i in range(count)), return_exceptions=True)
    sockets = [r for r in results if isinstance(r, ClientConnection)]
    errors = [f"{type(r).__name__}: {r}" for r in results if not isinstance(r, ClientConnection)]
    return sockets, errors


async def close_all(sockets: list[ClientConnection], concurrency: int = 500) -> None:
    sem = asyncio.Semaphore(concurrency)

    async def one(ws: ClientConnection) -> None:
        async with sem:
            with contextlib.suppress(Exception):
                await ws.close()

    await asyncio.gather(*(one(ws) for ws in sockets))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="python -m bench.load.loadgen",
        description="Room broadcast load generator (see bench/README.md).",
    )
    add = parser.add_argument
    add(
        "--url",
        required=True,
        action="append",
        help="room URL, e.g. ws://127.0.0.1:8000/ws/bench/r1/; repeat it to spread the members"
        " round-robin over several servers (the publisher is on the first)",
    )
    add("--members", type=int, default=10, help="sockets in the room")
    add("--messages", type=int, default=1000, help="messages the publisher sends")
    add("--rate", type=float, default=0.0, help="messages/s; 0 = saturate")
    add("--window", type=int, default=DEFAULT_WINDOW, help="max messages ahead of the slowest")
    add("--duration", type=float, default=None, help="stop sending after S s (not an error)")
    add("--max-seconds", type=float, default=None, help="stop sending after S s, as an error")
    add(
        "--origin",
        action="append",
        default=None,
        help="Origin header to send (default: none); one, or one per --url",
    )
    args = parser.parse_args(argv)
    result = asyncio.run(
        run_load(
            args.url[0] if len(args.url) == 1 else args.url,
            args.members,
            args.messages,
            args.rate,
            args.window,
            max_seconds=args.max_seconds,
            duration=args.duration,
            origin=None if not args.origin else args.origin[0] if len(args.origin) == 1 else args.origin,
        )
    )
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return result


if __name__ == "__main__":
    sys.exit(0 if main().get("ok") else 1)
