"""The chat-site scenario: the highest rate of saved messages a system sustains.

Many rooms of 10 members, every member sending at a steady rate (``bench.load.chatload``). The
offered total rate doubles from ``start_rate`` until a step fails, then the gap between the
last passing and the first failing rate is bisected (geometrically) while the time budget
lasts. A step passes when the sender kept up (achieved >= 95 % of the offered rate), every
member of every room got every message within ``drain_timeout`` of the last send, no
connection was lost, and p99 latency was <= 100 ms. The result is the highest passing rate:
messages/s, each saved once and delivered to its room of 10.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.harness.launch import Launch, Unavailable
from bench.harness.measurement import ENGINE_COUNTERS, cpu_probes, metric_counters, settle
from bench.harness.services import Services
from bench.load.chatload import ChatLoad
from bench.systems import System

P99_LIMIT_MS = 100.0
KEEP_UP = 0.95  # achieved / offered send rate below this: the server pushed back


@dataclass(frozen=True)
class ChatPlan:
    """Sizes and time bounds of the scenario (``QUICK_CHAT`` or ``FULL_CHAT``)."""

    rooms: int
    room_size: int
    step_seconds: float
    budget_seconds: float  # per system, for the search only (start and connect come on top)
    start_rate: float
    max_rate: float
    bisections: int
    drain_timeout: float = 2.0


QUICK_CHAT = ChatPlan(20, 10, 1.5, 16.0, 200.0, 12_800.0, 1)
FULL_CHAT = ChatPlan(50, 10, 3.0, 40.0, 200.0, 25_600.0, 2)


def step_passes(step: dict[str, Any]) -> tuple[bool, str]:
    """Whether a step was sustained, and if not, why."""
    if step["connections_closed"]:
        return False, f"{step['connections_closed']} connections lost"
    if step["sent_per_s"] < KEEP_UP * step["offered_per_s"]:
        return False, f"sent {step['sent_per_s']:,.0f}/s of {step['offered_per_s']:,.0f}/s offered"
    if not step["drained"]:
        return False, f"delivery fell behind ({step['delivered']:,} of {step['expected']:,})"
    p99 = step["p99_ms"]
    if p99 is None or p99 > P99_LIMIT_MS:
        return False, f"p99 {p99} ms > {P99_LIMIT_MS:g} ms"
    return True, "ok"


class RateSearch:
    """Doubling, then bisection, of the offered rate over one ``ChatLoad``."""

    def __init__(
        self,
        load: ChatLoad,
        plan: ChatPlan,
        server: Any,
        probes: dict[str, Any],
        counters: Callable[[], dict[str, float]] | None = None,
    ) -> None:
        self.load, self.plan, self.server, self.probes = load, plan, server, probes
        self.counters = counters
        self.steps: list[dict[str, Any]] = []
        self.best: float | None = None
        self.worst: float | None = None  # lowest failing rate
        self.deadline = time.monotonic() + plan.budget_seconds

    async def _try(self, rate: float) -> bool:
        await settle(self.server, max_wait=5.0)  # a failed step's backlog must not count against the next
        step = await self.load.step(
            rate, self.plan.step_seconds, self.plan.drain_timeout, self.probes, self.counters
        )
        step["passed"], step["why"] = step_passes(step)
        self.steps.append(step)
        counts = dict(step.get("counts") or {})
        if counts.get("echoes"):  # the mean, not the sum, says how far behind the readers were
            counts["echo_ms"] = round(counts["echo_ms"] / counts.pop("echoes"), 1)
        noted = ", ".join(f"{k} {v:,}" for k, v in counts.items() if v)
        print(f"      {rate:>9,.0f}/s offered: {step['why']} (p99 {step['p99_ms']} ms) {noted}", flush=True)
        if step["passed"]:
            self.best = max(self.best or 0.0, rate)
        else:
            self.worst = min(self.worst or math.inf, rate)
        return bool(step["passed"])

    def _time_left(self) -> bool:
        return time.monotonic() < self.deadline

    async def run(self) -> dict[str, Any]:
        """Search and return ``{"sustained_per_s", "steps", "limit"}``."""
        rate = self.plan.start_rate
        while rate <= self.plan.max_rate and self._time_left() and await self._try(rate):
            rate *= 2
        if self.best is None:  # even the start rate failed: look below it
            rate = self.plan.start_rate / 2
            while rate >= 10 and self._time_left() and not await self._try(rate):
                rate /= 2
        for _ in range(self.plan.bisections):
            if self.best is None or self.worst is None or not self._time_left():
                break
            if self.worst / self.best < 1.15:
                break
            await self._try(round(math.sqrt(self.best * self.worst)))
        limit = "budget" if not self._time_left() else ("max_rate" if self.worst is None else "p99/delivery")
        return {
            "sustained_per_s": self.best,
            "failed_at_per_s": self.worst,
            "limit": limit,
            "steps": self.steps,
        }


async def chat_system(system: System, plan: ChatPlan, services: Services, work: Path) -> dict[str, Any]:
    """Start ``system``, open the rooms, search the sustained rate, stop it; never raises."""
    out: dict[str, Any] = {"name": system.name, "processes": system.processes, "status": "ok"}
    print(f"== chat site: {system.name}", flush=True)
    services.flush_redis(system)
    t0 = time.monotonic()
    try:
        with Launch(system, work, services.redis, services.postgres) as launch:
            server = await launch.start()
            load = ChatLoad(launch.urls, launch.origins(), plan.rooms, plan.room_size)
            try:
                await load.open()
                probes = cpu_probes(server, launch.probes())
                counters = metric_counters(launch.ports, ENGINE_COUNTERS)
                out.update(await RateSearch(load, plan, server, probes, counters).run())
            finally:
                await load.close()
                server.stop()
    except Unavailable as exc:
        out.update(status="error", error=str(exc))
    except Exception as exc:
        out.update(status="error", error=f"{type(exc).__name__}: {exc}")
        print(f"  {system.name}: ERROR {out['error'][:300]}", flush=True)
    out["seconds"] = round(time.monotonic() - t0, 1)
    print(f"    sustained: {out.get('sustained_per_s')} saved messages/s ({out['seconds']} s)", flush=True)
    return out


async def run_chat_site(
    systems: list[System], plan: ChatPlan, services: Services, work: Path
) -> dict[str, Any]:
    """The scenario over ``systems``: ``{"plan": ..., "systems": {name: result}}``."""
    results = {s.name: await chat_system(s, plan, services, work) for s in systems}
    return {"plan": plan.__dict__, "systems": results}
