"""The outbox is bounded while the layer is slow: the oldest broadcasts go, peers catch up from history."""

from __future__ import annotations

import asyncio

from nexios_compat import metrics
from nexios_compat.engine.outbox import Outbox
from nexios_compat.engine.wire import Item


def entry(n: int, seq: int | None = None) -> Item:
    return ("text", f"{n:04d}", None, seq)


def dropped(kind: str) -> float:
    return metrics.OUTBOX_DROPPED.labels(kind)._value.get()


class SlowLayer:
    """A layer whose first publish hangs until released; records what it was given."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started = asyncio.Event()
        self.published: list[tuple[str, list[Item]]] = []
        self.done: asyncio.Queue[None] = asyncio.Queue()

    async def publish(self, room: str, items: list[Item]) -> None:
        self.started.set()
        await self.release.wait()
        self.published.append((room, items))
        self.done.put_nowait(None)


async def test_past_its_count_the_outbox_drops_the_oldest_and_asks_for_a_catch_up() -> None:
    layer, failures = SlowLayer(), list[bool]()
    outbox = Outbox(layer.publish, failures.append, max_items=10)
    task = asyncio.create_task(outbox.run())
    outbox.put("r", entry(0, seq=1))
    await layer.started.wait()  # the first batch is stuck in the layer
    saved_before, unsaved_before = dropped("saved"), dropped("unsaved")
    for n in range(1, 101):
        outbox.put("r", entry(n, seq=n + 1 if n % 2 else None))
    assert len(outbox) == 10
    assert dropped("saved") - saved_before == 45 and dropped("unsaved") - unsaved_before == 45
    assert failures and failures[0] is True  # saved ones dropped: peers read them from history
    layer.release.set()
    for _ in range(2):  # the stuck batch, then what the outbox kept
        await layer.done.get()
    task.cancel()
    assert [items for _, items in layer.published] == [
        [entry(0, 1)],
        [entry(n, n + 1 if n % 2 else None) for n in range(91, 101)],
    ]


async def test_past_its_bytes_the_outbox_drops_the_oldest() -> None:
    layer = SlowLayer()
    outbox = Outbox(layer.publish, lambda saved: None, max_bytes=40)
    for n in range(20):
        outbox.put("r", entry(n))  # four bytes each
    assert len(outbox) == 10
    layer.release.set()
    await outbox.drain()
    assert layer.published == [("r", [entry(n) for n in range(10, 20)])]


async def test_without_bounds_nothing_is_dropped() -> None:
    layer = SlowLayer()
    outbox = Outbox(layer.publish, lambda saved: None)
    for n in range(1000):
        outbox.put("r", entry(n))
    assert len(outbox) == 1000
