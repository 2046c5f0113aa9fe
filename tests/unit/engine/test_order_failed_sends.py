"""A client's sends with ids stay in the order sent when one of them fails.

When a saved send fails with ``HistoryUnavailable`` (the database stayed down past
the write timeout) and the database comes back before the same socket's next send
is tried, that next send must not be stored first: the client sends the failed
one again, and it would land after. The writer fails the socket's later sends
with ids to that room with it (queued, held or still to come) until the failed
ones are sent again, oldest first; the error frame names the ids.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from nexios_compat.engine.writer import HistoryWriter
from nexios_compat.exceptions import HistoryUnavailable
from nexios_compat.stores.history import PendingMessage, SavedMessage
from tests.support.fakes import IdempotentHistory, until


def send(client_id: str, socket: uuid.UUID, room: str = "a") -> PendingMessage:
    return PendingMessage(
        room=room,
        kind="text",
        text=client_id,
        data=None,
        sender=socket,
        client_id=client_id,
        sender_key="anon:k",
    )


class Recorder:
    """The writer's publish and reject callbacks, recording what each got."""

    def __init__(self, history: IdempotentHistory) -> None:
        self.history = history
        self.published: list[str | None] = []
        self.rejected: list[str | None] = []
        self.on_reject: list[object] = []

    async def publish(self, message: PendingMessage, saved: SavedMessage | None) -> None:
        self.published.append(message.client_id)

    async def reject(self, message: PendingMessage) -> None:
        self.rejected.append(message.client_id)
        self.history.down = False  # the database is back before the next batch is tried


def stored(history: IdempotentHistory) -> list[str | None]:
    return [message.client_id for message in history.rows]


async def test_a_later_send_is_not_stored_ahead_of_a_failed_one() -> None:
    history = IdempotentHistory()
    calls = Recorder(history)
    writer = HistoryWriter(history, calls.publish, write_timeout=0.2, reject=calls.reject)  # type: ignore[arg-type]
    writer.start()
    socket = uuid.uuid4()
    history.down = True
    await writer.submit(send("1", socket))  # accepted before anyone knew: the sender moves on
    await until(lambda: writer.failing, "the first failure")
    # While failing, the next send waits for its outcome (its socket's receive loop with it).
    second = asyncio.create_task(writer.submit(send("2", socket)))
    with pytest.raises(HistoryUnavailable) as failed:
        await second
    assert failed.value.ids == ("2",)
    assert json.loads(failed.value.client_frame) == {
        "type": "error",
        "error": "history_unavailable",
        "ids": ["2"],
    }
    assert calls.rejected == ["1"] and stored(history) == []
    # A new send of that socket is refused until the failed ones are sent again...
    with pytest.raises(HistoryUnavailable) as refused:
        await writer.submit(send("3", socket))
    assert refused.value.ids == ("3",)
    # ...out of order too; the oldest first is accepted, and so on.
    with pytest.raises(HistoryUnavailable):
        await writer.submit(send("2", socket))
    for client_id in ("1", "2", "3", "4"):
        await writer.submit(send(client_id, socket))
    await writer.flush()
    assert stored(history) == ["1", "2", "3", "4"]
    assert calls.published == ["1", "2", "3", "4"]
    await writer.stop()


async def test_other_sockets_and_sends_without_ids_are_not_held_back() -> None:
    history = IdempotentHistory()
    calls = Recorder(history)
    writer = HistoryWriter(history, calls.publish, write_timeout=0.2, reject=calls.reject)  # type: ignore[arg-type]
    writer.start()
    failed_socket, other = uuid.uuid4(), uuid.uuid4()
    history.down = True
    await writer.submit(send("1", failed_socket))
    await until(lambda: calls.rejected == ["1"], "the first send to fail")
    await writer.submit(send("x", other))  # another tab of the same person
    await writer.submit(send("y", failed_socket, room="b"))  # the same socket, another room
    no_id = PendingMessage(room="a", kind="text", text="plain", data=None, sender=failed_socket)
    await writer.submit(no_id)  # no id: no resend, no promise of order to keep
    await writer.flush()
    assert stored(history) == ["x", "y", None]
    # A socket that ended is forgotten: its next connection starts clear.
    writer.forget(failed_socket)
    await writer.submit(send("2", failed_socket))
    await writer.flush()
    assert stored(history) == ["x", "y", None, "2"]
    await writer.stop()


async def test_a_send_held_behind_a_busy_room_fails_with_the_one_before_it() -> None:
    history = IdempotentHistory()
    calls = Recorder(history)

    async def reject(message: PendingMessage) -> None:
        calls.rejected.append(message.client_id)
        history.busy.clear()  # the row is free again before the held room is tried again

    writer = HistoryWriter(history, calls.publish, write_timeout=0.3, reject=reject)  # type: ignore[arg-type]
    writer.start()
    socket = uuid.uuid4()
    history.busy.add("a")
    await writer.submit(send("1", socket))
    await until(lambda: writer.held == 1, "the room to be set aside")
    with pytest.raises(HistoryUnavailable) as failed:
        await writer.submit(send("2", socket))  # held behind "1", with a later deadline
    assert failed.value.ids == ("2",) and calls.rejected == ["1"]
    assert stored(history) == [] and writer.held == 0 and writer.pending == 0
    for client_id in ("1", "2"):
        await writer.submit(send(client_id, socket))
    await writer.flush()
    assert stored(history) == ["1", "2"]
    await writer.stop()


async def test_what_is_remembered_of_a_socket_is_bounded() -> None:
    history = IdempotentHistory()
    calls = Recorder(history)
    writer = HistoryWriter(history, calls.publish, write_timeout=0.2, reject=calls.reject)  # type: ignore[arg-type]
    writer._failed.limit = 5
    writer.start()
    socket = uuid.uuid4()
    history.down = True
    await writer.submit(send("0", socket))
    await until(lambda: calls.rejected == ["0"], "the first send to fail")
    for n in range(1, 50):
        with pytest.raises(HistoryUnavailable):
            await writer.submit(send(str(n), socket))
    assert writer._failed.remembered((socket, "a")) == ["0", "1", "2", "3", "4"]
    # Sent again in order: the remembered ones clear, then the rest are accepted.
    for n in range(50):
        await writer.submit(send(str(n), socket))
    await writer.flush()
    assert stored(history) == [str(n) for n in range(50)]
    await writer.stop()


def test_what_is_remembered_in_all_is_bounded_however_many_rooms_a_socket_sends_to() -> None:
    from nexios_compat.engine.failed_sends import FailedSends

    failed = FailedSends(limit=10, total=3)
    socket = uuid.uuid4()
    for n in range(20):  # one failure in each of 20 rooms: past 3 in all, none is kept
        failed.failed((socket, f"r{n}"), str(n))
    assert [failed.remembered((socket, f"r{n}")) for n in range(4)] == [["0"], ["1"], ["2"], []]
    failed.forget(socket)
    assert len(failed) == 0
    failed.failed((socket, "r9"), "9")  # room again once forgotten
    assert failed.remembered((socket, "r9")) == ["9"]
