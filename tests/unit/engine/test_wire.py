"""The wire format: every layer message a hub sends parses back to what was meant."""

from __future__ import annotations

import uuid

from nexios_compat.encoding import FrameCache
from nexios_compat.engine import wire


def test_fanout_round_trip_keeps_every_item_in_order() -> None:
    items: list[wire.Item] = [
        ("json", '{"a":1}', None, 7),
        ("bytes", None, b"\x00", None),
        ("text", "hi", None, 8),
    ]
    parsed = wire.parse(wire.fanout("room", items, "p1"))
    assert isinstance(parsed, wire.Fanout)
    assert (parsed.room, parsed.origin) == ("room", "p1")
    assert [wire.item(frame) for frame in parsed.frames] == items
    assert all(frame.room == "room" for frame in parsed.frames)


def test_send_to_carries_the_packed_payload() -> None:
    target = uuid.uuid4()
    parsed = wire.parse(wire.send_to(target, {"x": [1, 2]}))
    assert isinstance(parsed, wire.SendTo)
    assert parsed.channel_id == target
    assert (parsed.frame.kind, parsed.frame.text, parsed.frame.seq) == ("json", '{"x":[1,2]}', None)


def test_commands_round_trip() -> None:
    assert wire.parse(wire.close("r", 4000, "bye", "p")) == wire.Close("r", 4000, "bye", "p")
    assert wire.parse(wire.close(None, 1000, "", "")) == wire.Close(None, 1000, "", "")
    assert wire.parse(wire.flush_groups("p")) == wire.FlushGroups("p")
    assert wire.parse(wire.probe(3)) == wire.Probe(3)
    assert wire.parse(wire.probe(3, 2)) == wire.Probe(3, 2)
    assert wire.parse(wire.resync("p")) == wire.Resync("p")


def test_unknown_types_parse_to_none() -> None:
    assert wire.parse({"type": "chat.message", "text": "x"}) is None
    assert wire.parse({}) is None


def test_item_is_the_wire_form_of_a_frame_cache() -> None:
    assert wire.item(FrameCache("r", "text", "t", None, 5)) == ("text", "t", None, 5)
