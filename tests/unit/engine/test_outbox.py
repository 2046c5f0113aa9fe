"""The outbox: one layer message per room per batch, in order; failures reported."""

from __future__ import annotations

import asyncio

from nexios_compat.engine.outbox import Outbox
from nexios_compat.engine.wire import Item


def entry(n: int, seq: int | None = None) -> Item:
    return ("text", str(n), None, seq)


async def test_a_drain_publishes_one_batch_per_room_in_order() -> None:
    published: list[tuple[str, list[Item]]] = []

    async def publish(room: str, items: list[Item]) -> None:
        published.append((room, items))

    outbox = Outbox(publish, lambda saved: None)
    for n in range(3):
        outbox.put("a", entry(n))
        outbox.put("b", entry(10 + n))
    await outbox.drain()
    assert published == [("a", [entry(0), entry(1), entry(2)]), ("b", [entry(10), entry(11), entry(12)])]
    assert (outbox.batches, outbox.published, len(outbox)) == (2, 6, 0)


async def test_what_arrives_while_publishing_goes_in_the_next_batch() -> None:
    published: list[list[Item]] = []
    gate = asyncio.Event()

    async def publish(room: str, items: list[Item]) -> None:
        published.append(items)
        await gate.wait()

    outbox = Outbox(publish, lambda saved: None)
    task = asyncio.create_task(outbox.run())
    outbox.put("r", entry(1))
    while not published:
        await asyncio.sleep(0)
    outbox.put("r", entry(2))
    outbox.put("r", entry(3))
    gate.set()
    while len(published) < 2:
        await asyncio.sleep(0)
    task.cancel()
    assert published == [[entry(1)], [entry(2), entry(3)]]


async def test_a_failed_batch_is_reported_with_whether_it_held_saved_messages() -> None:
    failures: list[bool] = []

    async def publish(room: str, items: list[Item]) -> None:
        if room != "ok":
            raise ConnectionError("down")

    outbox = Outbox(publish, failures.append)
    outbox.put("unsaved", entry(1))
    outbox.put("saved", entry(2, seq=9))
    outbox.put("ok", entry(3))
    await outbox.drain()
    assert failures == [False, True]
    assert (outbox.batches, outbox.published) == (1, 1)  # the failures do not stop the others


async def test_rooms_are_published_side_by_side_each_in_order() -> None:
    # A room's message must not wait behind every other room's round trips to the layer.
    started: list[str] = []
    gate = asyncio.Event()
    published: list[tuple[str, list[Item]]] = []

    async def publish(room: str, items: list[Item]) -> None:
        started.append(room)
        await gate.wait()
        published.append((room, items))

    outbox = Outbox(publish, lambda saved: None, concurrency=3)
    for n in range(5):
        outbox.put(f"r{n}", entry(n))
    outbox.put("r0", entry(10))
    draining = asyncio.create_task(outbox.drain())
    while len(started) < 3:
        await asyncio.sleep(0)
    assert started == ["r0", "r1", "r2"]  # three at once, the rest after them
    gate.set()
    await draining
    assert published[0] == ("r0", [entry(0), entry(10)])
    assert sorted(room for room, _ in published) == ["r0", "r1", "r2", "r3", "r4"]
