"""The outbox: broadcasts already delivered locally, published to the other processes in batches."""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable

from .. import metrics
from .wire import Item

logger = logging.getLogger("nexios_compat.engine")

PublishBatch = Callable[[str, list[Item]], Awaitable[None]]
# Called after a batch could not be published, with whether it held saved messages.
OnFailure = Callable[[bool], None]
# Rooms a drain publishes at the same time (each a layer message of its own).
DEFAULT_CONCURRENCY = 16


class Outbox:
    """Queues broadcasts and publishes what accumulated, one layer message per room per batch.

    While the layer is slow the queue is bounded (``max_items``, ``max_bytes``):
    past either the oldest broadcasts are dropped for the layer (they were
    delivered here already). Saved ones among them are read from history by
    the other processes (``on_failure(True)`` asks for that catch-up, as after a
    failed publish); unsaved ones reach only this process.
    """

    def __init__(
        self,
        publish_batch: PublishBatch,
        on_failure: OnFailure,
        max_items: int | None = None,
        max_bytes: int | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
    ) -> None:
        self.publish_batch = publish_batch
        self.concurrency = max(1, concurrency)
        self.on_failure = on_failure
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._queue: collections.deque[tuple[str, Item]] = collections.deque()
        self._bytes = 0
        self._ready = asyncio.Event()
        # Batches published, broadcasts in them, and broadcasts dropped past a bound (diagnostics).
        self.batches = 0
        self.published = 0
        self.dropped = 0

    def put(self, room: str, item: Item) -> None:
        """Queue one broadcast for the other processes, dropping the oldest past a bound."""
        self._queue.append((room, item))
        self._bytes += _size(item)
        self._ready.set()
        if (self.max_items is None or len(self._queue) <= self.max_items) and (
            self.max_bytes is None or self._bytes <= self.max_bytes
        ):
            return
        saved = 0
        while len(self._queue) > 1 and (
            (self.max_items is not None and len(self._queue) > self.max_items)
            or (self.max_bytes is not None and self._bytes > self.max_bytes)
        ):
            _, old = self._queue.popleft()
            self._bytes -= _size(old)
            self.dropped += 1
            if old[3] is not None:
                saved += 1
                metrics.OUTBOX_DROPPED.labels("saved").inc()
            else:
                metrics.OUTBOX_DROPPED.labels("unsaved").inc()
        if saved:
            self.on_failure(True)

    def __len__(self) -> int:
        return len(self._queue)

    async def run(self) -> None:
        """Publish until cancelled."""
        while True:
            await self._ready.wait()
            self._ready.clear()
            await self.drain()

    async def drain(self) -> None:
        """Publish everything queued, in order per room.

        A drain sends one layer message per room, up to ``concurrency`` rooms at a
        time: each ``group_send`` is a few round trips to Redis, and a room must not
        wait behind every other room's (the other processes hold its saved
        broadcasts back until it arrives). A room's next message goes in the next
        drain, after this one's, so each room keeps its order.
        """
        while self._queue:
            batch, self._queue = self._queue, collections.deque()
            self._bytes = 0
            by_room: dict[str, list[Item]] = {}
            for room, entry in batch:
                by_room.setdefault(room, []).append(entry)
            rooms = list(by_room.items())
            for start in range(0, len(rooms), self.concurrency):
                (first, items), *others = rooms[start : start + self.concurrency]
                # The others as tasks; the first right away, as a lone room always was.
                side = [asyncio.ensure_future(self._publish(room, more)) for room, more in others]
                await self._publish(first, items)
                if side:
                    await asyncio.gather(*side)

    async def _publish(self, room: str, items: list[Item]) -> None:
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
            return
        self.batches += 1
        self.published += len(items)


def _size(item: Item) -> int:
    """The bytes a queued broadcast holds (text counted by characters: cheap, and close)."""
    text, data = item[1], item[2]
    return len(data) if data is not None else len(text or "")
