"""The outbox: broadcasts already delivered locally, published to the other processes in batches.

A drain waits for its previous one to come back through this process's own
reader (its *echo*) before it publishes, for at most ``ECHO_WAIT``: the readers
of every process take layer messages one at a time (channels_redis's core layer
spends four round trips on each), so while they are behind, what accumulates
goes out as fewer, larger messages instead of queueing behind them one by one.
When the reader keeps up the echo is back in about a millisecond and nothing
waits. A drain that spans at least as many rooms as there are processes goes
to every hub as one message (``publish_rooms``); the others, one per room.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import typing
from collections.abc import Awaitable, Callable

from .. import metrics
from .wire import Item

logger = logging.getLogger("nexios_compat.engine")

PublishBatch = Callable[[str, list[Item]], Awaitable[None]]
# Publishes many rooms' broadcasts as one message to every hub.
PublishRooms = Callable[[list[tuple[str, list[Item]]]], Awaitable[None]]
# Called after a batch could not be published, with whether it held saved messages.
OnFailure = Callable[[bool], None]
# Rooms a drain publishes at the same time (each a layer message of its own).
DEFAULT_CONCURRENCY = 16
# Longest a drain waits for the previous one's echo (a lost echo costs no more than this).
ECHO_WAIT = 0.05
# Bounds of one message to every hub; a larger drain is sent as several, in order.
ROOMS_MESSAGE_ITEMS = 1000
ROOMS_MESSAGE_BYTES = 256 * 1024
_TO_ROOM = metrics.FANOUT_MESSAGES.labels("room")
_TO_HUBS = metrics.FANOUT_MESSAGES.labels("hubs")


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
        publish_rooms: PublishRooms | None = None,
        processes: Callable[[], int] = lambda: 1,
        hears: Callable[[str], bool] = lambda room: False,
        echo_wait: float = ECHO_WAIT,
    ) -> None:
        self.publish_batch = publish_batch
        self.publish_rooms = publish_rooms
        # How many processes run (for the choice of message), and whether this
        # process is subscribed to a room's group (whether its echo comes back).
        self.processes = processes
        self.hears = hears
        self.echo_wait = echo_wait
        # The loop time of the drain being published: every message of it carries
        # this stamp, and its echo is recognised by it (``echoed``).
        self.stamp = 0.0
        self._awaiting: float | None = None
        self._echoed = asyncio.Event()
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
            await self.drain(paced=True)

    def echoed(self, stamp: float) -> None:
        """This process read back one of its own fan-outs, published at loop time ``stamp``."""
        metrics.LAYER_ECHO.observe(asyncio.get_running_loop().time() - stamp)
        if self._awaiting is not None and stamp >= self._awaiting:
            self._awaiting = None
            self._echoed.set()

    async def _wait_for_echo(self) -> None:
        """Wait until the last drain's echo is back, or ``echo_wait`` after it was sent."""
        if self._awaiting is None:
            return
        remaining = self._awaiting + self.echo_wait - asyncio.get_running_loop().time()
        if remaining > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._echoed.wait()
        self._awaiting = None

    async def drain(self, paced: bool = False) -> None:
        """Publish everything queued, in order per room (``paced``: each drain after the last one's echo).

        A drain sends one layer message per room, up to ``concurrency`` rooms at a
        time: each ``group_send`` is a few round trips to Redis, and a room must not
        wait behind every other room's (the other processes hold its saved
        broadcasts back until it arrives). A room's next message goes in the next
        drain, after this one's, so each room keeps its order.
        """
        while self._queue:
            if paced:
                await self._wait_for_echo()
            batch, self._queue = self._queue, collections.deque()
            self._bytes = 0
            by_room: dict[str, list[Item]] = {}
            for room, entry in batch:
                by_room.setdefault(room, []).append(entry)
            rooms = list(by_room.items())
            loop = asyncio.get_running_loop()
            self.stamp = loop.time()
            self._echoed.clear()
            if self.publish_rooms is not None and len(rooms) >= max(2, self.processes()):
                for chunk in _chunks(rooms):
                    await self._publish_rooms(chunk)
                self._awaiting = self.stamp  # every hub is in the group, this one too
                continue
            for start in range(0, len(rooms), self.concurrency):
                (first, items), *others = rooms[start : start + self.concurrency]
                # The others as tasks; the first right away, as a lone room always was.
                side = [asyncio.ensure_future(self._publish(room, more)) for room, more in others]
                await self._publish(first, items)
                if side:
                    await asyncio.gather(*side)
            if any(self.hears(room) for room, _ in rooms):
                self._awaiting = self.stamp

    async def _publish_rooms(self, rooms: list[tuple[str, list[Item]]]) -> None:
        publish = typing.cast(PublishRooms, self.publish_rooms)
        await self._publishing(publish(rooms), rooms, _TO_HUBS)

    async def _publish(self, room: str, items: list[Item]) -> None:
        await self._publishing(self.publish_batch(room, items), [(room, items)], _TO_ROOM)

    async def _publishing(
        self, sending: Awaitable[None], rooms: list[tuple[str, list[Item]]], counter: typing.Any
    ) -> None:
        """Await one layer message of ``rooms``; count it, or report what its failure lost."""
        count = sum(len(items) for _, items in rooms)
        try:
            await sending
        except Exception as exc:
            saved = sum(1 for _, items in rooms for entry in items if entry[3] is not None)
            # Saved ones are in history: every hub catches up once the layer is back.
            logger.warning(
                "Publishing %d broadcast(s) to %s failed (%r); %d saved one(s) will be read "
                "from history by the other processes, the rest reached only this process",
                count,
                ", ".join(repr(room) for room, _ in rooms),
                exc,
                saved,
            )
            self.on_failure(saved > 0)
            return
        counter.inc()
        self.batches += 1
        self.published += count


def _chunks(rooms: list[tuple[str, list[Item]]]) -> list[list[tuple[str, list[Item]]]]:
    """Split a drain's rooms into messages of bounded items and bytes (a room's items stay in order)."""
    chunks: list[list[tuple[str, list[Item]]]] = [[]]
    count = size = 0
    for room, items in rooms:
        for start in range(0, len(items), ROOMS_MESSAGE_ITEMS):
            part = items[start : start + ROOMS_MESSAGE_ITEMS]
            part_size = sum(_size(entry) for entry in part)
            if chunks[-1] and (
                count + len(part) > ROOMS_MESSAGE_ITEMS or size + part_size > ROOMS_MESSAGE_BYTES
            ):
                chunks.append([])
                count = size = 0
            chunks[-1].append((room, part))
            count += len(part)
            size += part_size
    return chunks


def _size(item: Item) -> int:
    """The bytes a queued broadcast holds (text counted by characters: cheap, and close)."""
    text, data = item[1], item[2]
    return len(data) if data is not None else len(text or "")
