"""The presence tracker: state on join, diffs from peers, and forgetting dead peers (only those)."""

from __future__ import annotations

import json
import time
import typing
import uuid

from nexios_compat.engine import wire
from nexios_compat.engine.presence.tracker import PresenceTracker
from nexios_compat.stores.services import MembershipService
from tests.support.fakes import FakeMember, FlakyLayer, MemoryMembershipStore, until


def events(member: FakeMember) -> list[dict[str, typing.Any]]:
    return [json.loads(frame["text"]) for frame in member.frames]


def peer_message(room: str, origin: str, version: tuple[int, int], key: str, full: bool) -> wire.Presence:
    entries = {f"{origin}-cid": [key, {"channel_id": f"{origin}-cid"}]}
    return typing.cast(
        wire.Presence, wire.parse(wire.presence(room, origin, "", version, entries, full=full))
    )


def tracker(store: MemoryMembershipStore | None = None) -> PresenceTracker:
    return PresenceTracker(
        FlakyLayer(),
        "me",
        lambda: "me-channel",
        MembershipService(store or MemoryMembershipStore()),
        0.0,
        100,
    )


async def test_a_peer_is_forgotten_only_if_the_heartbeat_that_missed_it_began_after_it_was_heard() -> None:
    presence = tracker()
    member = FakeMember()
    await presence.join(member, "r", ("me-key", {"channel_id": str(member.id)}))
    before = time.monotonic()
    await presence.receive(peer_message("r", "new-peer", (1, 0), "peer-key", full=True))
    await until(lambda: any(e.get("joins") for e in events(member)), "the peer's join diff")
    # A heartbeat whose query ran before the new peer registered does not list it: keep it.
    presence.prune(alive={"me"}, since=before)
    assert set(presence.state("r") or {}) == {"me-key", "peer-key"}
    presence.prune(alive={"me"}, since=time.monotonic())  # a later one: the peer is really gone
    assert set(presence.state("r") or {}) == {"me-key"}
    await until(lambda: any(e.get("leaves") for e in events(member)), "a leave diff")
    assert [e["type"] for e in events(member)] == ["presence_state", "presence_diff", "presence_diff"]
    await presence.stop()


async def test_a_room_is_seeded_from_the_rows_and_still_works_without_them() -> None:
    store = MemoryMembershipStore()
    store.register_process("other", "other-channel", 1)
    meta = {"channel_id": "x", "username": "row"}
    store.add("r", uuid.uuid4(), "other", {}, {"key": "row-key", "meta": meta})
    presence = tracker(store)
    member = FakeMember()
    await presence.join(member, "r", ("me-key", {"channel_id": str(member.id)}))
    assert set(events(member)[0]["state"]) == {"me-key", "row-key"}

    class Down(MemoryMembershipStore):
        def members(self, room: str | None = None) -> typing.Any:
            raise ConnectionError("database down")

    presence = tracker(Down())
    member = FakeMember()
    await presence.join(member, "r", ("me-key", {"channel_id": str(member.id)}))
    assert set(events(member)[0]["state"]) == {"me-key"}  # from memory: the join still works
    await presence.stop()


async def test_a_gap_in_a_peers_changes_asks_it_for_its_entries() -> None:
    presence = tracker()
    layer = typing.cast(FlakyLayer, presence.layer)
    member = FakeMember()
    await presence.join(member, "r", ("me-key", {"channel_id": str(member.id)}))
    await presence.receive(peer_message("r", "p", (1, 0), "k0", full=True))
    wants = await layer.new_channel()
    message = wire.presence("r", "p", wants, (1, 2), {"p-2": ["k2", {"channel_id": "p-2"}]})
    await presence.receive(typing.cast(wire.Presence, wire.parse(message)))
    asked = await layer.receive(wants)
    assert asked == wire.presence_want("r", "me", "me-channel")
    await presence.stop()
