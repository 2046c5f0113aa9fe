"""The history writer: batches a process's saved messages, stores them, then publishes them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from ..conf import get_config
from ..history import HistoryService, PendingMessage, SavedMessage

logger = logging.getLogger("nexios_compat.history")

Publish = Callable[[PendingMessage, SavedMessage | None], Awaitable[None]]


class HistoryWriter:
    """Batches saved messages per process: one transaction for all that arrive together.

    Each message is stored, then published, in the order it was submitted, and
    the sender's ``await`` returns once both are done: saved before sent.
    """

    def __init__(self, history: HistoryService, publish: Publish) -> None:
        self.history = history
        self.publish = publish
        self._queue: list[tuple[PendingMessage, asyncio.Future[SavedMessage]]] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        """Start the background writer task."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="nexios_compat.history-writer")

    async def stop(self) -> None:
        """Write and publish everything queued, then stop the task."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def submit(self, message: PendingMessage) -> SavedMessage:
        """Queue a message; return once it is stored and published."""
        future: asyncio.Future[SavedMessage] = asyncio.get_running_loop().create_future()
        self._queue.append((message, future))
        self._wakeup.set()
        return await future

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                await self._flush_batch()
            if self._closing:
                return

    async def _flush_batch(self) -> None:
        size = int(get_config()["HISTORY_BATCH_SIZE"])
        batch, self._queue = self._queue[:size], self._queue[size:]
        try:
            saved = await self.history.append([message for message, _ in batch])
        except Exception as exc:
            logger.exception("Saving %d message(s) to history failed", len(batch))
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (message, future), record in zip(batch, saved, strict=True):
            try:
                await self.publish(message, record)
            except Exception as exc:
                if not future.done():
                    future.set_exception(exc)
                continue
            if not future.done():
                future.set_result(record)
