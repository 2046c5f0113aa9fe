"""The history writer: accepted in order, stored in batches, delivered after the commit, bounded."""

from __future__ import annotations

import asyncio

import pytest
from django.db import OperationalError

from nexios_compat.engine.writer import HistoryWriter
from nexios_compat.exceptions import HistoryUnavailable
from nexios_compat.stores.history import PendingMessage, SavedMessage
from tests.support.fakes import SlowHistory, until


def msg(text: str, room: str = "r") -> PendingMessage:
    return PendingMessage(room=room, kind="text", text=text, data=None)


async def make(**limits: int) -> tuple[SlowHistory, HistoryWriter, list[tuple[str | None, int | None]]]:
    history = SlowHistory()
    delivered: list[tuple[str | None, int | None]] = []

    async def publish(message: PendingMessage, saved: SavedMessage | None) -> None:
        delivered.append((message.text, saved.seq if saved else None))

    writer = HistoryWriter(history, publish, **limits)  # type: ignore[arg-type]
    writer.start()
    return history, writer, delivered


async def test_what_queues_during_a_transaction_goes_into_the_next_one_in_order() -> None:
    history, writer, delivered = await make()
    history.gate.clear()
    await writer.submit(msg("0"))  # returns at once: accepted, not stored
    await until(lambda: history.calls == 1, "the first transaction to begin")
    for i in range(1, 5):
        await writer.submit(msg(str(i)))
    assert delivered == []
    history.gate.set()
    await writer.flush()
    assert history.batches == [["0"], ["1", "2", "3", "4"]]
    assert delivered == [("0", 1), ("1", 2), ("2", 3), ("3", 4), ("4", 5)]
    assert writer.transactions == 2 and writer.pending == 0
    await writer.stop()


async def test_past_max_pending_senders_wait_and_nothing_is_dropped() -> None:
    history, writer, delivered = await make(max_pending=3, batch_size=2)
    history.gate.clear()
    sends = [asyncio.create_task(writer.submit(msg(str(i)))) for i in range(10)]
    await until(lambda: writer.waits > 0, "a sender to be held back")
    assert sum(task.done() for task in sends) == 3  # queued or in the database: the bound
    assert writer.pending == 3
    history.gate.set()
    await asyncio.gather(*sends)
    await writer.flush()
    assert sorted(int(text or "") for text, _ in delivered) == list(range(10))
    assert [seq for _, seq in delivered] == list(range(1, 11))
    await writer.stop()


async def test_the_byte_bound_holds_senders_back_too() -> None:
    history, writer, _ = await make(max_pending_bytes=10)
    history.gate.clear()
    await writer.submit(msg("x" * 8))  # one message always fits
    second = asyncio.create_task(writer.submit(msg("y" * 8)))
    await until(lambda: writer.waits > 0, "the second to wait for room")
    assert not second.done() and writer.pending == 1
    history.gate.set()
    await second
    await writer.flush()
    assert history.batches == [["x" * 8], ["y" * 8]]
    await writer.stop()


async def test_wait_for_commit_returns_after_delivery_and_raises_a_failed_save() -> None:
    history, writer, delivered = await make()
    await writer.submit(msg("a"), wait=True)
    assert delivered == [("a", 1)]
    history.fail = True
    with pytest.raises(OSError):
        await writer.submit(msg("b"), wait=True)
    await writer.submit(msg("c"))  # pipelined: the failure is logged and counted
    await writer.flush()
    assert writer.failed == 2
    assert delivered == [("a", 1)]  # never delivered unsaved
    await writer.stop()


async def test_unsaved_messages_pass_through_in_order_without_a_transaction() -> None:
    history, writer, delivered = await make()
    history.gate.clear()
    await writer.submit(msg("saved"))
    assert writer.pending_in("r") and not writer.pending_in("other")
    await writer.submit(msg("unsaved"), save=False)
    history.gate.set()
    await writer.flush()
    assert delivered == [("saved", 1), ("unsaved", None)]
    assert history.batches == [["saved"]]
    assert not writer.pending_in("r")
    await writer.stop()


async def test_stop_stores_and_delivers_everything_accepted() -> None:
    history, writer, delivered = await make()
    history.gate.clear()
    for i in range(3):
        await writer.submit(msg(str(i)))
    stopping = asyncio.create_task(writer.stop())
    await asyncio.sleep(0)
    history.gate.set()
    await stopping
    assert [text for text, _ in delivered] == ["0", "1", "2"]


class FlakyHistory(SlowHistory):
    """Raises what a stopped PostgreSQL raises while ``down`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    async def append(self, messages: list[PendingMessage]) -> list[SavedMessage]:
        if self.down:
            self.calls += 1
            raise OperationalError("connection refused")
        return await super().append(messages)


async def test_a_database_outage_shorter_than_the_write_timeout_only_delays_saves() -> None:
    history = FlakyHistory()
    delivered: list[str | None] = []

    async def publish(message: PendingMessage, saved: SavedMessage | None) -> None:
        delivered.append(message.text)

    writer = HistoryWriter(history, publish, write_timeout=60.0)  # type: ignore[arg-type]
    writer.start()
    history.down = True
    await writer.submit(msg("during"))  # accepted before anyone knew
    await until(lambda: history.calls >= 3, "retries")
    assert writer.failing and delivered == []
    # While failing, a saved send waits for its outcome instead of returning at once.
    waiting = asyncio.create_task(writer.submit(msg("waits")))
    await until(lambda: writer.pending == 2, "the second accepted")
    assert not waiting.done()
    history.down = False
    await waiting
    assert delivered == ["during", "waits"] and not writer.failing
    await writer.stop()


async def test_saves_fail_with_history_unavailable_past_the_write_timeout_and_nothing_is_sent() -> None:
    history = FlakyHistory()
    delivered: list[str | None] = []

    async def publish(message: PendingMessage, saved: SavedMessage | None) -> None:
        delivered.append(message.text)

    writer = HistoryWriter(history, publish, write_timeout=0.2)  # type: ignore[arg-type]
    writer.start()
    history.down = True
    await writer.submit(msg("lost"))
    await until(lambda: writer.failing, "the first failure")
    with pytest.raises(HistoryUnavailable):
        await writer.submit(msg("refused"))
    await writer.submit(msg("unsaved"), save=False)  # unsaved traffic keeps flowing
    await writer.flush()
    assert delivered == ["unsaved"] and writer.unavailable == 2
    history.down = False
    await writer.submit(msg("back"))
    await writer.flush()
    assert delivered == ["unsaved", "back"] and not writer.failing
    await writer.stop()
