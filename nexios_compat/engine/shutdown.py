"""Graceful shutdown under daphne: close every socket with 1001, let handlers finish, then stop."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import sys
import typing
from collections.abc import Awaitable, Callable

from .protocols import Connection

logger = logging.getLogger("nexios_compat.engine")

SHUTDOWN_REASON = "Server shutting down"


def retry_after_of(value: object) -> float:
    """``SHUTDOWN_RETRY_AFTER`` as seconds; anything but a non-negative number is 0 (check W150 says so)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        return 0.0
    return float(value)


def shutdown_reason(retry_after: float) -> str:
    """The 1001 close reason: ``SHUTDOWN_REASON``, with ``; retry-after=N`` when ``retry_after`` > 0.

    The hint is a window, not a wait: a client reconnects at a random moment
    within the next N seconds, so one process's clients do not all land on the
    others in the same instant (``rooms.js`` does; see docs/rolling.md).
    """
    if retry_after <= 0:
        return SHUTDOWN_REASON
    return f"{SHUTDOWN_REASON}; retry-after={retry_after:g}"


class GracefulShutdown:
    """The sockets this process serves, with their handler tasks, and the shutdown sequence."""

    def __init__(self, timeout: float, stop: Callable[[], Awaitable[None]], retry_after: float = 0.0) -> None:
        self.timeout = timeout
        self.reason = shutdown_reason(retry_after)
        self.stop = stop
        self.sockets: dict[Connection, asyncio.Task[None]] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        # ``stopping`` from its start, ``draining`` while handlers may still finish by
        # themselves, ``shut_down`` once the hub has stopped for good.
        self.stopping = False
        self.draining = False
        self.shut_down = False
        self.deadline = 0.0
        self._trigger: tuple[typing.Any, typing.Any] | None = None

    def connection_started(self, websocket: Connection, task: asyncio.Task[None]) -> None:
        """A consumer started serving ``websocket`` in ``task``."""
        self.sockets[websocket] = task
        self._idle.clear()

    def connection_finished(self, websocket: Connection) -> None:
        """A consumer finished: handler, ``on_disconnect`` and leaving its rooms are done."""
        self.sockets.pop(websocket, None)
        if not self.sockets:
            self._idle.set()

    def install(self) -> None:
        """Under daphne, shut down gracefully when its reactor stops (SIGTERM, SIGINT).

        daphne runs on Twisted's asyncio reactor. Its own "before shutdown"
        trigger cancels every application (or, within a second of a handshake,
        raises ``KeyError('application_instance')`` and cancels none); this one
        then closes the sockets with 1001, lets their handlers finish and stops
        the hub. Nothing is registered on any other loop (tests, other servers).
        """
        reactor = sys.modules.get("twisted.internet.reactor")
        if (
            reactor is None
            or not getattr(reactor, "running", False)
            or getattr(reactor, "_asyncioEventloop", None) is not asyncio.get_running_loop()
        ):
            return
        trigger = reactor.addSystemEventTrigger("before", "shutdown", self._before_shutdown)
        self._trigger = (reactor, trigger)

    def uninstall(self) -> None:
        """Remove the daphne trigger (the hub stopped some other way)."""
        if self._trigger is not None and not self.stopping:
            reactor, trigger = self._trigger
            with contextlib.suppress(Exception):
                reactor.removeSystemEventTrigger(trigger)
        self._trigger = None

    def _begin(self) -> None:
        if not self.stopping:
            self.stopping = self.draining = True
            self.deadline = asyncio.get_running_loop().time() + self.timeout

    def _before_shutdown(self) -> typing.Any:
        from twisted.internet.defer import Deferred

        # Set before the applications daphne has just cancelled run again: their
        # consumers see it and let the 1001 close end them instead.
        self._begin()
        # A fresh context: this callback may run in one copied from a task that was
        # inside sync_to_async, whose deadlock guard would refuse the ORM calls that follow.
        task = asyncio.get_running_loop().create_task(
            self._bounded(), name="nexios_compat.hub-shutdown", context=contextvars.Context()
        )
        return Deferred.fromFuture(task)

    async def _bounded(self) -> None:
        # Whatever hangs (the layer, the database), the process must still exit;
        # the peers' heartbeats then remove what it could not.
        try:
            async with asyncio.timeout(self.timeout + 5.0):
                await self.run()
        except TimeoutError:
            logger.warning("Graceful shutdown did not finish in time; exiting anyway")

    async def run(self) -> None:
        """Close every socket with 1001, wait for the handlers (until the deadline), then stop.

        Handlers end as on any close: ``on_disconnect`` runs and what it saves is
        written; the rooms are left. Handlers still running at the deadline are
        cancelled. Then pending history is flushed and the process leaves the cluster.
        """
        self._begin()
        sockets = list(self.sockets)
        logger.info("Shutting down: closing %d WebSocket(s) with 1001", len(sockets))
        for websocket in sockets:
            try:
                await websocket.close(1001, self.reason)
            except Exception:
                logger.debug("Closing a socket at shutdown failed", exc_info=True)
        try:
            async with asyncio.timeout_at(self.deadline):
                await self._idle.wait()
        except TimeoutError:
            await self._cancel_late()
        self.draining = False
        self.shut_down = True
        await self.stop()

    async def _cancel_late(self) -> None:
        self.draining = False
        late = [task for task in self.sockets.values() if not task.done()]
        logger.warning("Cancelling %d WebSocket handler(s) still running at the shutdown deadline", len(late))
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late, timeout=1.0)
