"""A room whose row is busy is set aside: other rooms commit; it keeps its order, then saves or fails."""

from __future__ import annotations

import asyncio

import pytest

from nexios_compat.engine.locked_rooms import FIRST_RETRY_DELAY, MAX_RETRY_DELAY, Entry, HeldRooms
from nexios_compat.engine.writer import HistoryWriter
from nexios_compat.exceptions import HistoryUnavailable
from nexios_compat.stores.history import PendingMessage, SavedMessage
from tests.support.fakes import SlowHistory, until


def msg(text: str, room: str) -> PendingMessage:
    return PendingMessage(room=room, kind="text", text=text, data=None)


class Writer:
    """A writer over ``SlowHistory`` that records deliveries and rejections."""

    def __init__(self, write_timeout: float | None = 60.0) -> None:
        self.history = SlowHistory()
        self.delivered: list[tuple[str | None, int | None]] = []
        self.rejected: list[str | None] = []
        self.writer = HistoryWriter(
            self.history,  # type: ignore[arg-type]
            self.publish,
            write_timeout=write_timeout,
            reject=self.reject,
        )
        self.writer.start()

    async def publish(self, message: PendingMessage, saved: SavedMessage | None) -> None:
        self.delivered.append((message.text, saved.seq if saved else None))

    async def reject(self, message: PendingMessage) -> None:
        self.rejected.append(message.text)

    def texts(self, prefix: str) -> list[tuple[str | None, int | None]]:
        return [d for d in self.delivered if (d[0] or "").startswith(prefix)]


async def test_a_busy_room_waits_in_order_while_other_rooms_commit() -> None:
    w = Writer()
    w.history.busy = {"a"}
    await w.writer.submit(msg("a1", "a"))
    await w.writer.submit(msg("b1", "b"))
    await w.writer.submit(msg("a2-unsaved", "a"), save=False)  # queues behind a1, in the hold
    await w.writer.submit(msg("b2", "b"))
    await w.writer.flush_rooms(["b"])  # returns while "a" is held
    assert w.delivered == [("b1", 1), ("b2", 2)]
    assert w.writer.held == 1 and w.writer.pending_in("a") and not w.writer.pending_in("b")
    flushing_a = asyncio.create_task(w.writer.flush_rooms(["a"]))
    # A saved send to a held room waits for its outcome, as while the database fails.
    a3 = asyncio.create_task(w.writer.submit(msg("a3", "a")))
    await w.writer.submit(msg("b3", "b"))
    await w.writer.flush_rooms(["b"])
    assert w.texts("b") == [("b1", 1), ("b2", 2), ("b3", 3)]
    assert not a3.done() and not flushing_a.done() and w.texts("a") == []
    w.history.busy.clear()  # the other transaction ends
    await a3
    await flushing_a
    assert w.texts("a") == [("a1", 1), ("a2-unsaved", None), ("a3", 2)]
    assert ["a1", "a3"] in w.history.batches  # stored together, in order, when retried
    assert w.writer.held == 0 and w.writer.pending == 0 and w.writer.set_aside >= 1
    await w.writer.stop()


async def test_a_room_busy_past_the_write_timeout_fails_its_saves_and_only_its_own() -> None:
    w = Writer(write_timeout=0.3)
    w.history.busy = {"a"}
    await w.writer.submit(msg("a1", "a"))  # its sender moved on: told through reject
    await until(lambda: w.writer.held == 1, "room a to be set aside")
    with pytest.raises(HistoryUnavailable):
        await w.writer.submit(msg("a2", "a"))  # waits for its outcome, which is a failure
    await w.writer.submit(msg("b1", "b"))
    await w.writer.flush()
    assert w.rejected == ["a1"]
    assert w.delivered == [("b1", 1)] and w.writer.unavailable == 2
    assert not w.writer.failing  # the database answers: only one room is busy
    w.history.busy.clear()
    await w.writer.submit(msg("a3", "a"))
    await w.writer.flush()
    assert w.texts("a") == [("a3", 1)]  # nothing failed took a number
    await w.writer.stop()


async def test_stop_waits_for_a_held_room_to_be_stored() -> None:
    w = Writer()
    w.history.busy = {"a"}
    await w.writer.submit(msg("a1", "a"))
    await until(lambda: w.writer.held == 1, "room a to be set aside")
    stopping = asyncio.create_task(w.writer.stop())
    await until(lambda: w.history.attempts >= 3, "room a to be retried")
    assert not stopping.done()
    w.history.busy.clear()
    await stopping
    assert w.delivered == [("a1", 1)]


def entry(ticket: int, accepted: float, save: bool = True, room: str = "a") -> Entry:
    return Entry(msg(str(ticket), room), save, 1, None, ticket, accepted)


def test_held_rooms_settle_only_the_entries_past_their_deadline() -> None:
    held = HeldRooms(write_timeout=10.0)
    entries = [entry(1, 0.0), entry(2, 1.0, save=False), entry(3, 5.0), entry(4, 6.0, save=False)]
    assert held.set_aside("a", entries, now=0.0) == []
    assert held.next_retry() == FIRST_RETRY_DELAY and held.due(0.0) == []
    assert list(held.take("a")) == entries and "a" not in held
    # Retried at 10.5 and still busy: 1 and the unsaved 2 behind it settle; 3 and 4 wait.
    assert held.set_aside("a", entries, now=10.5) == entries[:2]
    assert held.next_retry() == 10.5 + 2 * FIRST_RETRY_DELAY
    held.follow(entry(5, 10.6))
    assert [e.ticket for e in held.take("a")] == [3, 4, 5]


def test_held_rooms_back_off_while_busy_and_never_past_the_oldest_deadline() -> None:
    held = HeldRooms(write_timeout=0.5)
    pauses = []
    for _ in range(8):
        held.set_aside("a", [entry(1, 100.0)], now=100.0)
        pauses.append(round((held.next_retry() or 0.0) - 100.0, 3))
        held.take("a")
    assert pauses == [0.05, 0.1, 0.2, 0.4, 0.5, 0.5, 0.5, 0.5]  # capped by the deadline
    held.settled("a")
    held.set_aside("a", [entry(2, 200.0)], now=200.0)
    assert held.next_retry() == 200.0 + FIRST_RETRY_DELAY
    unlimited = HeldRooms(write_timeout=None)
    for _ in range(10):
        unlimited.set_aside("a", [entry(1, 0.0)], now=0.0)
        unlimited.take("a")
    unlimited.set_aside("a", [entry(1, 0.0)], now=0.0)
    assert unlimited.next_retry() == MAX_RETRY_DELAY
