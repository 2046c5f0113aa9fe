"""Graceful shutdown (1001 to every socket, handlers finish or are cancelled) and the scheduler."""

from __future__ import annotations

import asyncio

from nexios_compat.engine.scheduler import Scheduler
from nexios_compat.engine.shutdown import GracefulShutdown, retry_after_of
from tests.support.fakes import until


class Socket:
    def __init__(self) -> None:
        self.closed_with: int | None = None
        self.closed = asyncio.Event()

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.closed_with = code
        self.closed.set()

    async def wait_closed(self, timeout: float) -> None:
        return None


async def test_shutdown_closes_every_socket_waits_for_handlers_then_stops() -> None:
    stopped: list[str] = []

    async def stop() -> None:
        stopped.append("stop")

    shutdown = GracefulShutdown(timeout=5, stop=stop)
    sockets = [Socket(), Socket()]
    finished: list[int] = []

    async def handler(index: int, socket: Socket) -> None:
        await socket.closed.wait()
        finished.append(index)  # on_disconnect ran
        shutdown.connection_finished(socket)

    for index, socket in enumerate(sockets):
        shutdown.connection_started(socket, asyncio.create_task(handler(index, socket)))
    await shutdown.run()
    assert [s.closed_with for s in sockets] == [1001, 1001]
    assert sorted(finished) == [0, 1]
    assert stopped == ["stop"]
    assert shutdown.stopping and shutdown.shut_down and not shutdown.draining


async def test_handlers_still_running_at_the_deadline_are_cancelled() -> None:
    async def stop() -> None:
        return None

    shutdown = GracefulShutdown(timeout=0.05, stop=stop)
    socket = Socket()
    task = asyncio.create_task(asyncio.sleep(60))
    shutdown.connection_started(socket, task)
    await shutdown.run()
    assert task.cancelled()
    assert shutdown.shut_down


async def test_scheduler_runs_each_job_on_its_own_beat_despite_failures() -> None:
    calls: dict[str, int] = {"ok": 0, "bad": 0}

    async def ok() -> None:
        calls["ok"] += 1

    async def bad() -> None:
        calls["bad"] += 1
        raise RuntimeError("boom")

    scheduler = Scheduler()
    scheduler.every("ok", 0.01, ok)
    scheduler.every("bad", 0.01, bad)
    scheduler.start()
    try:
        await until(lambda: calls["ok"] >= 3 and calls["bad"] >= 3, "three runs of each job")
        assert scheduler.runs["bad"] >= 3
    finally:
        for task in scheduler.tasks():
            task.cancel()


class ReasonSocket(Socket):
    def __init__(self) -> None:
        super().__init__()
        self.reason: str | None = None

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.reason = reason
        await super().close(code, reason)


async def test_the_close_reason_carries_the_retry_after_window_when_one_is_set() -> None:
    async def stop() -> None:
        return None

    reasons: list[str | None] = []
    for retry_after in (0.0, 5.0, 2.5):
        shutdown = GracefulShutdown(timeout=0.05, stop=stop, retry_after=retry_after)
        socket = ReasonSocket()

        async def handler(socket: ReasonSocket = socket, shutdown: GracefulShutdown = shutdown) -> None:
            await socket.closed.wait()
            shutdown.connection_finished(socket)

        shutdown.connection_started(socket, asyncio.create_task(handler()))
        await shutdown.run()
        reasons.append(socket.reason)
    # The default keeps the reason clients and tests already know.
    assert reasons == [
        "Server shutting down",
        "Server shutting down; retry-after=5",
        "Server shutting down; retry-after=2.5",
    ]


def test_retry_after_accepts_only_non_negative_numbers() -> None:
    assert [retry_after_of(v) for v in (3, 0.5, 0, -1, "5", None, True, float("nan"))] == [
        3.0,
        0.5,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
    ]
