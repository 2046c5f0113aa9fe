"""The local registry and delivery: who is where, live writes, and resume without duplicates."""

from __future__ import annotations

import json

from nexios_compat.encoding import FrameCache
from nexios_compat.engine import delivery
from nexios_compat.engine.registry import LocalRegistry
from tests.support.fakes import FakeMember


def frame(room: str, seq: int | None, body: object) -> FrameCache:
    return FrameCache(room, "json", json.dumps(body), None, seq)


def test_rooms_open_fill_and_empty() -> None:
    registry = LocalRegistry()
    a, b = FakeMember(), FakeMember()
    assert registry.open_room("r") is True
    assert registry.open_room("r") is False
    registry.add(a, "r")
    registry.add(b, "r")
    assert a.groups == {"r"} and registry.get(a.id) is a
    assert registry.remove(a, "r") is False  # b is still there
    assert registry.remove(b, "r") is True
    assert b.groups == set()
    registry.close_room("r")
    assert "r" not in registry.rooms
    assert {member.id for member in registry.members.values()} == {a.id, b.id}
    registry.unregister(a)
    assert registry.get(a.id) is None


async def test_deliver_writes_to_room_members_only() -> None:
    registry = LocalRegistry()
    inside, outside = FakeMember(), FakeMember()
    registry.open_room("r")
    registry.add(inside, "r")
    registry.register(outside)
    await delivery.deliver(registry, frame("r", None, {"n": 1}))
    await delivery.deliver(registry, frame("elsewhere", None, {"n": 2}))
    assert inside.texts() == ['{"n": 1}']
    assert outside.frames == []


async def test_replay_then_buffered_live_without_duplicates() -> None:
    registry = LocalRegistry()
    member = FakeMember()
    registry.open_room("r")
    slot = registry.add(member, "r")
    slot.buffer = []
    # Live broadcasts arrive while history is being read: 3 (also in history) and 4.
    await delivery.deliver(registry, frame("r", 3, 3))
    await delivery.deliver(registry, frame("r", 4, 4))
    assert member.frames == []
    await delivery.replay(member, slot, [frame("r", 2, 2), frame("r", 3, 3)], since=1, live_next=5)
    slot.buffer = None
    assert member.texts() == ["2", "3", "4"]
    assert slot.replayed is None  # the live stream is already past what was replayed


async def test_replay_ahead_of_the_live_stream_skips_repeats() -> None:
    registry = LocalRegistry()
    member = FakeMember()
    registry.open_room("r")
    slot = registry.add(member, "r")
    slot.buffer = []
    await delivery.replay(member, slot, [frame("r", 5, 5), frame("r", 6, 6)], since=4, live_next=5)
    slot.buffer = None
    assert slot.replayed == 6
    for seq in (5, 6, 7):  # the live stream catches up: 5 and 6 were replayed already
        await delivery.deliver(registry, frame("r", seq, seq))
    assert member.texts() == ["5", "6", "7"]
    assert slot.replayed is None
