"""One scheduler for every periodic job of a hub, each job on its own beat."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

logger = logging.getLogger("nexios_compat.engine")

Job = Callable[[], Awaitable[object]]


class Scheduler:
    """Runs named jobs at fixed intervals; a slow or failing job delays only itself."""

    def __init__(self) -> None:
        self._jobs: list[tuple[str, float, Job]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.runs: dict[str, int] = {}

    def every(self, name: str, interval: float, job: Job) -> None:
        """Run ``job`` every ``interval`` seconds once started (the first run after one interval)."""
        self._jobs.append((name, interval, job))
        self.runs[name] = 0

    def start(self) -> None:
        """Start every job's loop."""
        self._tasks = [
            asyncio.create_task(self._loop(name, interval, job), name=f"nexios_compat.hub-{name}")
            for name, interval, job in self._jobs
        ]

    async def _loop(self, name: str, interval: float, job: Job) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time() + interval
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            due = max(due + interval, loop.time())
            try:
                await job()
            except Exception:
                logger.exception("Hub %s failed", name)
            self.runs[name] += 1

    def tasks(self) -> list[asyncio.Task[None]]:
        """Return the running loops (to cancel them at shutdown)."""
        return list(self._tasks)
