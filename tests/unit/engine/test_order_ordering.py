"""Nothing of a room overtakes a saved broadcast held behind a gap; epochs move only as the store says."""

from __future__ import annotations

import asyncio

from nexios_compat.encoding import FrameCache
from nexios_compat.engine.ordering import RoomOrdering


def saved(seq: int, epoch: str = "e1", room: str = "r") -> FrameCache:
    return FrameCache(room, "text", f"{epoch}:{seq}", None, seq, epoch)


def unsaved(text: str, room: str = "r") -> FrameCache:
    return FrameCache(room, "text", text, None, None)


class Store:
    """A room's head as the store has it, and what was delivered locally."""

    def __init__(self, last_seq: int = 0, epoch: str = "e1") -> None:
        self.last_seq = last_seq
        self.epoch = epoch
        self.delivered: list[str | None] = []
        self.heads = 0

    async def deliver(self, cache: FrameCache) -> None:
        self.delivered.append(cache.text)

    async def read_since(self, room: str, since: int) -> tuple[list[FrameCache], int]:
        return [], self.last_seq

    async def read_head(self, room: str) -> tuple[int, str]:
        self.heads += 1
        return self.last_seq, self.epoch

    def ordering(self) -> RoomOrdering:
        return RoomOrdering(self.deliver, self.read_since, 60, read_head=self.read_head)


async def test_an_unsaved_broadcast_waits_behind_a_held_saved_one() -> None:
    store = Store()
    ordering = store.ordering()
    ordering.start("r", 1, "e1")
    await ordering.offer(saved(2))  # ahead of another process's 1
    await ordering.offer(unsaved("after 2"))
    assert store.delivered == []
    await ordering.offer(saved(1))
    assert store.delivered == ["e1:1", "e1:2", "after 2"]
    await ordering.offer(unsaved("now"))  # nothing held any more: straight through
    assert store.delivered[-1] == "now"


async def test_a_reply_waits_for_the_saved_broadcasts_held_now_only() -> None:
    store = Store()
    ordering = store.ordering()
    ordering.start("r", 1, "e1")
    await ordering.settled(["r", "elsewhere"])  # nothing held: at once
    await ordering.offer(saved(2))
    reply = asyncio.ensure_future(ordering.settled(["r"]))
    await asyncio.sleep(0)
    await ordering.offer(saved(4))  # later traffic: the reply does not wait for it
    assert not reply.done()
    await ordering.offer(saved(1))
    await asyncio.wait_for(reply, 1)
    assert store.delivered == ["e1:1", "e1:2"]


async def test_a_late_pre_flush_message_does_not_retire_the_current_epoch() -> None:
    # This process subscribed after the flush (e1 -> e2, numbering goes on at 5);
    # a message of e1 published before the flush arrives late.
    store = Store(last_seq=4, epoch="e2")
    ordering = store.ordering()
    ordering.start("r", 5, "e2")
    await ordering.offer(saved(3, "e1"))
    await ordering.offer(saved(5, "e2"))
    await ordering.offer(saved(6, "e2"))
    assert store.delivered == ["e2:5", "e2:6"], "the room went silent"
    assert ordering.epochs["r"] == "e2" and ordering.next_seq("r") == 7


async def test_a_duplicate_from_before_a_flush_seen_here_is_only_a_duplicate() -> None:
    store = Store(last_seq=2, epoch="e1")
    ordering = store.ordering()
    ordering.start("r", 1, "e1")
    await ordering.offer(saved(1, "e1"))
    await ordering.offer(saved(2, "e1"))
    store.last_seq, store.epoch = 3, "e2"  # flushed
    await ordering.offer(saved(3, "e2"))
    await ordering.offer(saved(2, "e1"))  # the layer delivered it twice
    await ordering.offer(saved(4, "e2"))
    assert store.delivered == ["e1:1", "e1:2", "e2:3", "e2:4"]


async def test_a_late_message_of_a_recreated_rooms_past_life_is_never_delivered() -> None:
    # The room was deleted and recreated (e2 restarts at 1); e1 had gone up to 9.
    store = Store(last_seq=0, epoch="e2")
    ordering = store.ordering()
    ordering.start("r", 1, "e2")
    await ordering.offer(saved(7, "e1"))  # late: seq above next_seq, yet not a flush
    for seq in range(1, 7):
        await ordering.offer(saved(seq, "e2"))
    assert store.delivered == [f"e2:{seq}" for seq in range(1, 7)]
    assert ordering.epochs["r"] == "e2"


async def test_a_recreated_room_is_followed_from_one() -> None:
    # A regression guard: asking the store must still follow a real restart.
    store = Store(last_seq=5, epoch="e1")
    ordering = store.ordering()
    ordering.start("r", 5, "e1")
    await ordering.offer(saved(5, "e1"))
    store.last_seq, store.epoch = 1, "e2"
    await ordering.offer(saved(1, "e2"))
    await ordering.offer(saved(6, "e1"))  # the old life's, late
    await ordering.offer(saved(2, "e2"))
    assert store.delivered == ["e1:5", "e2:1", "e2:2"]
