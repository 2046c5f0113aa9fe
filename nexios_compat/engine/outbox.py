"""The outbox: broadcasts already delivered locally, published to the other processes in batches."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from .wire import Item

logger = logging.getLogger("nexios_compat.engine")

PublishBatch = Callable[[str, list[Item]], Awaitable[None]]
# Called after a batch could not be published, with whether it held saved messages.
OnFailure = Callable[[bool], None]


class Outbox:
    """Queues broadcasts and publishes what accumulated, one layer message per room per batch."""

    def __init__(self, publish_batch: PublishBatch, on_failure: OnFailure) -> None:
        self.publish_batch = publish_batch
        self.on_failure = on_failure
        self._queue: list[tuple[str, Item]] = []
        self._ready = asyncio.Event()
        # Batches published, and broadcasts in them (diagnostics).
        self.batches = 0
        self.published = 0

    def put(self, room: str, item: Item) -> None:
        """Queue one broadcast for the other processes."""
        self._queue.append((room, item))
        self._ready.set()

    def __len__(self) -> int:
        return len(self._queue)

    async def run(self) -> None:
        """Publish until cancelled."""
        while True:
            await self._ready.wait()
            self._ready.clear()
            await self.drain()

    async def drain(self) -> None:
        """Publish everything queued, in order."""
        while self._queue:
            batch, self._queue = self._queue, []
            by_room: dict[str, list[Item]] = {}
            for room, entry in batch:
                by_room.setdefault(room, []).append(entry)
            for room, items in by_room.items():
                try:
                    await self.publish_batch(room, items)
                except Exception as exc:
                    saved = sum(1 for entry in items if entry[3] is not None)
                    # Saved ones are in history: every hub catches up once the layer is back.
                    logger.warning(
                        "Publishing %d broadcast(s) to %r failed (%r); %d saved one(s) will be read "
                        "from history by the other processes, the rest reached only this process",
                        len(items),
                        room,
                        exc,
                        saved,
                    )
                    self.on_failure(saved > 0)
                    continue
                self.batches += 1
                self.published += len(items)
