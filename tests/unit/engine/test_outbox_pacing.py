"""The outbox paces its drains by their echo and sends a drain of many rooms as one message to every hub."""

from __future__ import annotations

import asyncio
import collections
import types
import typing

from nexios_compat.encoding import FrameCache
from nexios_compat.engine import inbox, outbox, wire
from nexios_compat.engine.outbox import Outbox
from nexios_compat.engine.wire import Item

Rooms = list[tuple[str, list[Item]]]


def entry(n: int, seq: int | None = None) -> Item:
    return ("text", str(n), None, seq)


class Layer:
    """Records what the outbox publishes, per room and to every hub."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, typing.Any]] = []

    async def room(self, room: str, items: list[Item]) -> None:
        self.sent.append((room, items))

    async def hubs(self, rooms: Rooms) -> None:
        self.sent.append(("*", rooms))


async def until(condition: typing.Callable[[], bool]) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


async def test_a_drain_waits_for_the_last_ones_echo_and_sends_what_accumulated_at_once() -> None:
    layer = Layer()
    box = Outbox(
        layer.room, lambda saved: None, publish_rooms=layer.hubs, hears=lambda room: True, echo_wait=60
    )
    task = asyncio.create_task(box.run())
    box.put("a", entry(1))
    await until(lambda: len(layer.sent) == 1)
    first = box.stamp
    for n in range(2, 5):
        box.put("b" if n % 2 else "c", entry(n))
    for _ in range(50):
        await asyncio.sleep(0)
    assert len(layer.sent) == 1  # the reader has not read the first one back yet
    box.echoed(first)
    await until(lambda: len(layer.sent) == 2)
    task.cancel()
    assert layer.sent == [("a", [entry(1)]), ("*", [("c", [entry(2), entry(4)]), ("b", [entry(3)])])]
    assert box.stamp > first


async def test_a_lost_echo_holds_the_next_drain_back_no_longer_than_echo_wait() -> None:
    layer = Layer()
    box = Outbox(layer.room, lambda saved: None, hears=lambda room: True, echo_wait=0.02)
    task = asyncio.create_task(box.run())
    box.put("a", entry(1))
    await until(lambda: len(layer.sent) == 1)
    box.put("a", entry(2))  # the echo of the first never comes
    for _ in range(200):
        if len(layer.sent) == 2:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    assert layer.sent == [("a", [entry(1)]), ("a", [entry(2)])]


async def test_no_wait_when_this_process_is_not_in_the_group() -> None:
    # Publishing to a room this process has no member in: nothing comes back to wait for.
    layer = Layer()
    box = Outbox(layer.room, lambda saved: None, hears=lambda room: False, echo_wait=60)
    task = asyncio.create_task(box.run())
    box.put("a", entry(1))
    await until(lambda: len(layer.sent) == 1)
    box.put("a", entry(2))
    await until(lambda: len(layer.sent) == 2)
    task.cancel()
    assert [items for _, items in layer.sent] == [[entry(1)], [entry(2)]]


async def test_fewer_rooms_than_processes_go_to_each_rooms_group() -> None:
    layer = Layer()
    box = Outbox(layer.room, lambda saved: None, publish_rooms=layer.hubs, processes=lambda: 3)
    box.put("a", entry(1))
    box.put("b", entry(2))
    await box.drain()
    assert sorted(room for room, _ in layer.sent) == ["a", "b"]
    box.put("a", entry(3))
    box.put("b", entry(4))
    box.put("c", entry(5))
    await box.drain()
    assert layer.sent[-1] == ("*", [("a", [entry(3)]), ("b", [entry(4)]), ("c", [entry(5)])])
    assert (box.batches, box.published) == (3, 5)


def test_a_large_drain_is_split_into_bounded_messages_keeping_each_rooms_order() -> None:
    items = [entry(n) for n in range(outbox.ROOMS_MESSAGE_ITEMS + 5)]
    chunks = outbox._chunks([("a", items), ("b", [entry(-1)])])
    assert [sum(len(part) for _, part in chunk) for chunk in chunks] == [outbox.ROOMS_MESSAGE_ITEMS, 6]
    assert [item for chunk in chunks for room, part in chunk if room == "a" for item in part] == items
    big = ("text", "x" * (outbox.ROOMS_MESSAGE_BYTES // 2 + 1), None, None)
    assert len(outbox._chunks([("a", [big]), ("b", [big]), ("c", [big])])) == 3


def test_the_message_to_every_hub_round_trips() -> None:
    message = wire.fanout_rooms([("a", [entry(1), entry(2, seq=7)]), ("b", [entry(3)])], "p1", 12.5)
    parsed = wire.parse(message)
    assert isinstance(parsed, wire.FanoutRooms)
    assert (parsed.origin, parsed.stamp, [room for room, _ in parsed.rooms]) == ("p1", 12.5, ["a", "b"])
    frames = wire.frames("a", parsed.rooms[0][1])
    assert [(frame.room, frame.text, frame.seq) for frame in frames] == [("a", "1", None), ("a", "2", 7)]


class Ordering:
    def __init__(self) -> None:
        self.sequencers: dict[str, object] = {}
        self.offered: list[tuple[str, str | None]] = []

    async def offer(self, cache: FrameCache) -> None:
        self.offered.append((cache.room, cache.text))


def fake_hub() -> typing.Any:
    box = Outbox(Layer().room, lambda saved: None, hears=lambda room: True)
    registry = types.SimpleNamespace(rooms={"a": {}, "c": {}})
    return types.SimpleNamespace(
        process_id="me", ordering=Ordering(), outbox=box, registry=registry, received=collections.Counter()
    )


async def test_a_hub_keeps_the_rooms_it_has_members_in_and_knows_its_own_echo() -> None:
    hub = fake_hub()
    rooms = [("a", [entry(1)]), ("b", [entry(2)]), ("c", [entry(3), entry(4)])]
    await inbox.handle(hub, wire.fanout_rooms(rooms, "other", 1.0))
    assert hub.ordering.offered == [("a", "1"), ("c", "3"), ("c", "4")]
    hub.outbox._awaiting = 5.0
    await inbox.handle(hub, wire.fanout_rooms(rooms, "me", 4.0))  # an older drain of ours
    assert hub.outbox._awaiting == 5.0
    await inbox.handle(hub, wire.fanout("a", [entry(9)], "me", 5.0))
    assert hub.outbox._awaiting is None  # the drain it waited for is back
    assert hub.ordering.offered == [("a", "1"), ("c", "3"), ("c", "4")]  # ours were delivered when sent
