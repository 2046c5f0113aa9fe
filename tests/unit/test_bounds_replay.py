"""The replay buffer is bounded: past it a resume fails cleanly, and never sends a stream with a hole."""

from __future__ import annotations

import asyncio
import json
import threading
import typing

import pytest
from asgiref.sync import sync_to_async

from nexios_compat.encoding import FrameCache
from nexios_compat.engine import delivery
from nexios_compat.engine.registry import LocalRegistry
from nexios_compat.stores.history import DatabaseHistoryStore, Position
from nexios_compat.websockets.channels import ChannelBox
from tests.support.fakes import FakeMember
from tests.support.helpers import join, pending, room_app


def frame(seq: int | None, body: object) -> FrameCache:
    return FrameCache("r", "json", json.dumps(body), None, seq)


def test_the_buffer_drops_everything_past_its_count_and_remembers_the_highest_seq() -> None:
    buffer = delivery.ReplayBuffer(max_count=2)
    for seq in (1, 2, 3, 4):
        buffer.append(frame(seq, seq))
    assert buffer.overflowed and list(buffer) == [] and buffer.highest == 4
    buffer.reset()
    buffer.append(frame(5, 5))
    assert not buffer.overflowed and [cache.seq for cache in buffer] == [5]


def test_the_buffer_counts_bytes() -> None:
    buffer = delivery.ReplayBuffer(max_bytes=10)
    buffer.append(frame(None, "abc"))  # 5 characters of JSON
    assert not buffer.overflowed
    buffer.append(frame(None, "abcdef"))
    assert buffer.overflowed and list(buffer) == []


class Flooded(FakeMember):
    """A member whose room keeps broadcasting while it is being replayed to."""

    def __init__(self, registry: LocalRegistry, per_drain: int, total: int = 20) -> None:
        super().__init__()
        self.registry = registry
        self.per_drain = per_drain
        self.next_live = 100
        self.total = total

    async def drain(self) -> None:
        for _ in range(min(self.per_drain, 100 + self.total - self.next_live)):
            await delivery.deliver(self.registry, frame(self.next_live, self.next_live))
            self.next_live += 1


async def test_a_replay_outrun_by_live_broadcasts_fails_without_sending_a_hole() -> None:
    registry = LocalRegistry()
    member = Flooded(registry, per_drain=3)
    registry.open_room("r")
    slot = registry.add(member, "r")
    slot.buffer = delivery.ReplayBuffer(max_count=5)
    with pytest.raises(delivery.ReplayOverflow):
        await delivery.replay(member, slot, [frame(s, s) for s in range(1, 11)], since=0, live_next=100)
    sent = [json.loads(text) for text in member.texts()]
    # Only saved messages, in order from the start: what was sent has no gap.
    assert sent == list(range(1, len(sent) + 1))


async def test_a_replay_within_the_bound_sends_saved_then_live() -> None:
    registry = LocalRegistry()
    member = Flooded(registry, per_drain=1)
    registry.open_room("r")
    slot = registry.add(member, "r")
    slot.buffer = delivery.ReplayBuffer(max_count=50)
    await delivery.replay(member, slot, [frame(s, s) for s in range(1, 4)], since=0, live_next=100)
    sent = [json.loads(text) for text in member.texts()]
    assert sent == [1, 2, 3, *range(100, 120)]


# Through a socket: live broadcasts outrun the history read -----------------------------

GATE = {"entered": threading.Event(), "release": threading.Event()}


class GatedHistoryStore(DatabaseHistoryStore):
    """Reads for a resume wait until the test lets them go."""

    def read(self, room: str, since: int, limit: int | None = None, max_bytes: int | None = None) -> Position:
        GATE["entered"].set()
        assert GATE["release"].wait(5), "the test never released the read"
        return super().read(room, since, limit, max_bytes)


@pytest.fixture
def gated(settings: typing.Any) -> typing.Iterator[typing.Any]:
    GATE["entered"].clear()
    GATE["release"].clear()
    yield settings
    GATE["release"].set()


async def resume_while_flooded(count: int) -> tuple[typing.Any, list[typing.Any]]:
    saved = await sync_to_async(DatabaseHistoryStore().append)(
        [pending("flood", {"n": n}) for n in (1, 2, 3)]
    )
    joining = asyncio.ensure_future(
        join(room_app(), f"/room/flood?since=3&epoch={saved[0].epoch}&envelope=1")
    )
    await asyncio.to_thread(GATE["entered"].wait, 5)
    for n in range(count):
        await ChannelBox.group_send("flood", {"live": n})
    GATE["release"].set()
    return await joining


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("hub_cleanup")
async def test_past_the_buffer_during_the_read_the_resume_is_not_recovered(gated: typing.Any) -> None:
    gated.NEXIOS_COMPAT = {"HISTORY_STORE": f"{__name__}.GatedHistoryStore", "RESUME_MAX_BUFFERED": 3}
    client, replayed = await resume_while_flooded(5)
    assert replayed == [
        {"type": "resume", "room": "flood", "epoch": replayed[0]["epoch"], "recovered": False, "last_seq": 3}
    ]
    # The socket carries on live after the answer.
    await ChannelBox.group_send("flood", {"after": True})
    assert (await client.receive_json_from())["payload"] == {"after": True}
    await client.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("hub_cleanup")
async def test_within_the_buffer_what_arrived_during_the_read_follows_the_answer(gated: typing.Any) -> None:
    gated.NEXIOS_COMPAT = {"HISTORY_STORE": f"{__name__}.GatedHistoryStore", "RESUME_MAX_BUFFERED": 10}
    client, replayed = await resume_while_flooded(5)
    assert replayed[0]["recovered"] is True
    assert [frame["payload"] for frame in replayed[1:]] == [{"live": n} for n in range(5)]
    await client.disconnect()
