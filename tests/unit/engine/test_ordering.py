"""Room ordering: saved broadcasts in seq order, gaps held back, then filled from history in order."""

from __future__ import annotations

import asyncio

from nexios_compat.encoding import FrameCache
from nexios_compat.engine.ordering import RoomOrdering
from tests.support.fakes import until


def saved(seq: int, room: str = "r") -> FrameCache:
    return FrameCache(room, "text", str(seq), None, seq)


class Recorder:
    def __init__(self, history: list[FrameCache] | None = None) -> None:
        self.delivered: list[int | None] = []
        self.history = history or []
        self.reads: list[tuple[str, int]] = []

    async def deliver(self, cache: FrameCache) -> None:
        self.delivered.append(cache.seq)

    async def read_since(self, room: str, since: int) -> tuple[list[FrameCache], int]:
        self.reads.append((room, since))
        # Newest first, as a careless store might return them: the fill must sort.
        frames = sorted(
            (c for c in self.history if c.seq is not None and c.seq > since), key=lambda c: -(c.seq or 0)
        )
        return frames, max((c.seq or 0 for c in self.history), default=since)


async def test_out_of_order_broadcasts_are_delivered_in_order() -> None:
    rec = Recorder()
    ordering = RoomOrdering(rec.deliver, rec.read_since, reorder_timeout=60)
    ordering.start("r", 1)
    for seq in (3, 1, 4, 2):
        await ordering.offer(saved(seq))
    assert rec.delivered == [1, 2, 3, 4]
    assert ordering.held_back == 2
    assert ordering.next_seq("r") == 5
    assert ordering.timers() == []  # the gap closed: no fill pending


async def test_unsaved_broadcasts_pass_straight_through() -> None:
    rec = Recorder()
    ordering = RoomOrdering(rec.deliver, rec.read_since, reorder_timeout=60)
    ordering.start("r", 1)
    await ordering.offer(FrameCache("r", "text", "x", None, None))
    assert rec.delivered == [None]
    await ordering.offer(saved(2))  # held behind 1: what comes unsaved now waits behind it
    await ordering.offer(FrameCache("r", "text", "x", None, None))
    assert rec.delivered == [None]


async def test_a_gap_that_stays_open_is_filled_from_history_in_order() -> None:
    rec = Recorder(history=[saved(n) for n in range(1, 6)])
    ordering = RoomOrdering(rec.deliver, rec.read_since, reorder_timeout=0.05)
    ordering.start("r", 1)
    await ordering.offer(saved(4))  # 1-3 were lost on the layer
    assert rec.delivered == []
    await until(lambda: rec.delivered == [1, 2, 3, 4, 5], "the gap to be filled")
    assert rec.reads == [("r", 0)]
    assert ordering.gap_fills == 1
    await ordering.offer(saved(5))  # arrives live after the fill: not twice
    await ordering.offer(saved(6))
    assert rec.delivered == [1, 2, 3, 4, 5, 6]


async def test_a_failing_history_read_still_delivers_what_was_held() -> None:
    rec = Recorder()

    async def broken(room: str, since: int) -> tuple[list[FrameCache], int]:
        raise OSError("database down")

    ordering = RoomOrdering(rec.deliver, broken, reorder_timeout=0.01)
    ordering.start("r", 1)
    await ordering.offer(saved(3))
    await until(lambda: rec.delivered == [3], "the held broadcast")


async def test_forgetting_a_room_cancels_its_gap_timer() -> None:
    rec = Recorder()
    ordering = RoomOrdering(rec.deliver, rec.read_since, reorder_timeout=60)
    ordering.start("r", 1)
    await ordering.offer(saved(2))
    (timer,) = ordering.timers()
    ordering.forget("r")
    await asyncio.sleep(0)
    assert timer.cancelled()
    assert ordering.next_seq("r") is None


def in_epoch(seq: int, epoch: str) -> FrameCache:
    return FrameCache("r", "text", f"{epoch}{seq}", None, seq, epoch)


async def test_a_room_that_restarts_at_one_in_a_new_epoch_is_ordered_from_one() -> None:
    rec = Recorder()
    ordering = RoomOrdering(rec.deliver, rec.read_since, reorder_timeout=60)
    ordering.start("r", 3, "e1")  # two messages before this process subscribed
    for seq in (3, 5):
        await ordering.offer(in_epoch(seq, "e1"))  # 4 never comes: the room is recreated
    for seq in (2, 1, 3):
        await ordering.offer(in_epoch(seq, "e2"))
    await ordering.offer(in_epoch(6, "e1"))  # late, from the room's previous life
    assert rec.delivered == [3, 5, 1, 2, 3]  # what waited behind the old gap, then the new epoch
    assert ordering.gap_fills == 0 and rec.reads == [] and ordering.timers() == []
    assert ordering.next_seq("r") == 4 and ordering.epochs["r"] == "e2"


async def test_a_flush_starts_an_epoch_but_numbering_goes_on() -> None:
    rec = Recorder()
    ordering = RoomOrdering(rec.deliver, rec.read_since, reorder_timeout=60)
    ordering.start("r", 1, "e1")
    await ordering.offer(in_epoch(1, "e1"))
    await ordering.offer(in_epoch(2, "e2"))
    await ordering.offer(in_epoch(1, "e2"))  # a duplicate, not a restart: numbering went on
    assert rec.delivered == [1, 2] and ordering.next_seq("r") == 3
    assert ordering.held_back == 0


async def test_a_fill_never_skips_a_number_saved_after_history_was_read() -> None:
    # 30 is being committed by another process while this one reads history: the read
    # sees the room at 29, and 31 (committed after 30) is already held here. Skipping
    # 30 as "pruned" would lose it for this process's members for good.
    rec = Recorder(history=[saved(n) for n in range(1, 30)])
    ordering = RoomOrdering(rec.deliver, rec.read_since, reorder_timeout=60)
    ordering.start("r", 30)
    await ordering.offer(saved(31))
    await ordering.fill("r")
    assert rec.delivered == []
    assert len(ordering.timers()) == 1  # it will look again
    await ordering.offer(saved(30))  # arrives live (or from the next read)
    assert rec.delivered == [30, 31]
    assert ordering.timers() == []
