"""A rolling deploy behind nginx: presence watchers, the restart of each daphne in turn, the report.

Used by tests/cluster/test_rolling_deploy.py with the fault-probe workload
(tests/support/fault_probe.py): every client reaches the daphnes only through
:class:`~tests.support.nginx.Nginx`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import statistics
import time
import typing
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence

from websockets.exceptions import ConnectionClosed, InvalidHandshake

from devservers import DaphneServer
from tests.support.cluster import PresenceView
from tests.support.fault_probe import RECONNECT_PAUSE, Ended, ProbeClient, ended
from tests.support.helpers import until
from tests.support.site import Served, open_ws


class PresenceWatcher:
    """A person (``?username=name``) in a presence room, reconnecting through the proxy when closed.

    Each connection builds its own :class:`PresenceView`; ``most_metas`` is the most
    tabs any person had in any view at any moment (a closed socket still shown).
    """

    def __init__(self, name: str, proxy: Served, room: str, connect: Mapping[str, typing.Any]) -> None:
        self.name, self.proxy, self.room, self.connect = name, proxy, room, dict(connect)
        self.views: list[PresenceView] = []
        self.connections = 0
        self.failures: list[str] = []
        self.most_metas = 0
        self.offline: list[float] = []
        self.ended: list[Ended] = []  # how each connection it did not close itself ended
        self._down_since: float | None = None
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name=f"presence-{name}")

    async def _run(self) -> None:
        path = f"/mp/presence/{self.room}?username={self.name}"
        while not self._stop.is_set():
            try:
                async with open_ws(self.proxy, path, open_timeout=5, close_timeout=1, **self.connect) as ws:
                    self.connections += 1
                    if self._down_since is not None:
                        self.offline.append(time.monotonic() - self._down_since)
                    view = PresenceView()
                    self.views.append(view)
                    try:
                        async for raw in ws:
                            view.apply([json.loads(raw)])
                            self.most_metas = max(self.most_metas, *view.keys().values(), 0)
                    finally:
                        self._down_since = time.monotonic()
                        if not self._stop.is_set():
                            self.ended += ended(ws)
            except (OSError, TimeoutError, ConnectionClosed, InvalidHandshake) as exc:
                self.failures.append(repr(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), RECONNECT_PAUSE)

    def shown(self) -> dict[str, int]:
        """Each person the current connection is shown, with their number of tabs."""
        return self.views[-1].keys() if self.views else {}

    def errors(self) -> list[str]:
        return [error for view in self.views for error in view.errors]

    async def stop(self) -> None:
        self._stop.set()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def ready(server: DaphneServer) -> bool:
    """``GET /health/ready`` answers 200 (blocking: call in a thread)."""
    try:
        with urllib.request.urlopen(f"{server.url}/health/ready", timeout=2) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.HTTPError):
        return False


async def routed_to(proxy: Served, server: DaphneServer, connect: Mapping[str, typing.Any]) -> bool:
    """Whether a new socket through ``proxy`` lands on ``server`` (its hub's process id has the pid)."""
    try:
        async with open_ws(proxy, "/mp/member/routing", open_timeout=5, close_timeout=1, **connect) as ws:
            hello = json.loads(await asyncio.wait_for(ws.recv(), 5))
    except (OSError, TimeoutError, ConnectionClosed, InvalidHandshake):
        return False
    return f"-{server.pid}-" in str(hello.get("process"))


class Step(typing.NamedTuple):
    port: int
    drained: float  # SIGTERM to exit
    ready: float  # exit to /health/ready answering 200
    routed: float  # ready to nginx sending it sockets again (it marked the port failed)
    settled: float  # then to the load flowing again and presence whole


async def roll(
    daphnes: list[DaphneServer],
    start: Callable[[int], DaphneServer],
    routed: Callable[[DaphneServer], Awaitable[bool]],
    settled: Callable[[], Awaitable[float]],
    *,
    graceful: bool = True,
    route_within: float = 25.0,
    count: int | None = None,
) -> list[Step]:
    """Replace each daphne (the first ``count``) in turn on its port: SIGTERM (or SIGKILL), start, ready,
    routed, settled.

    The next process is stopped only once the proxy sends sockets to the new one:
    nginx marks a port that refused a connection failed for ``fail_timeout``, and
    stopping the next before that passes leaves it no live upstream at all (502s).
    """
    steps = []
    for index, old in enumerate(daphnes[:count]):
        began = time.monotonic()
        await asyncio.to_thread(old.stop if graceful else old.kill)
        exited = time.monotonic()
        new = await asyncio.to_thread(start, old.port)
        daphnes[index] = new
        await until(functools.partial(asyncio.to_thread, ready, new), f"{new.url}/health/ready", timeout=20)
        up = time.monotonic()
        await until(
            functools.partial(routed, new), f"nginx to route to {new.url}", timeout=route_within, poll=0.5
        )
        steps.append(Step(old.port, exited - began, up - exited, time.monotonic() - up, await settled()))
    return steps


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile of ``values`` (0 for none)."""
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(fraction * 100) - 1]


def report(
    clients: Sequence[ProbeClient], watchers: Sequence[PresenceWatcher], steps: Sequence[Step]
) -> dict[str, typing.Any]:
    """What a rolling deploy cost the clients: reconnections, time offline, messages held back."""
    offline = sorted([g for c in clients for g in c.offline] + [g for w in watchers for g in w.offline])
    return {
        "reconnects": {c.name: c.connections - 1 for c in clients}
        | {w.name: w.connections - 1 for w in watchers},
        "refused_attempts": sum(len(c.errors) for c in clients) + sum(len(w.failures) for w in watchers),
        "offline_p50_s": round(percentile(offline, 0.5), 3),
        "offline_p99_s": round(percentile(offline, 0.99), 3),
        "offline_max_s": round(max(offline, default=0.0), 3),
        "replayed_on_resume": sum(c.replayed for c in clients),
        "unanswered_at_close": sum(len(c.lost - c.acked - c.nacked) for c in clients),
        "closes": dict(
            Counter(
                f"{e.code} {e.reason}"
                for e in [*(e for c in clients for e in c.ended), *(e for w in watchers for e in w.ended)]
            )
        ),
        "most_tabs_shown": max((w.most_metas for w in watchers), default=0),
        "steps": [
            s._asdict() | {k: round(v, 2) for k, v in s._asdict().items() if k != "port"} for s in steps
        ],
    }
