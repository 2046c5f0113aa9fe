"""A model test: a client that resends what was not acknowledged gets every message stored once, in order.

One client (as ``rooms.js`` is) types messages with ids into one room through the
real ``HistoryWriter`` over a fake idempotent store. Its socket hands frames to the
writer one at a time, as an endpoint's receive loop does (a send waits while the
writer is failing). Meanwhile the database goes down and comes back (failures are
immediate: a zero write timeout), batches are held at the store's gate, the
client reconnects (a new socket; the old one's queued sends stay accepted), and
the client resends everything unacknowledged, oldest first, at any moment.

Invariants, against the model (the typed order):
- what the store holds of this client is in typed order, each id at most once;
- after the database is back and the client resends until nothing is
  unacknowledged, every typed message is stored exactly once, in typed order.

``NEXIOS_MODEL_EXAMPLES`` sets the number of examples (default 60).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from nexios_compat.engine.writer import HistoryWriter
from nexios_compat.exceptions import HistoryUnavailable
from nexios_compat.stores.history import PendingMessage, SavedMessage
from tests.support.fakes import IdempotentHistory
from tests.support.models import model_settings

ROOM = "r"


class Socket:
    """One connection: frames go to the writer one after another, as a receive loop sends them."""

    def __init__(self, writer: HistoryWriter) -> None:
        self.id = uuid.uuid4()
        self.writer = writer
        self.frames: asyncio.Queue[str] = asyncio.Queue()
        self.errors: list[tuple[str, ...]] = []
        self.task = asyncio.create_task(self._receive())

    async def _receive(self) -> None:
        while True:
            client_id = await self.frames.get()
            message = PendingMessage(
                room=ROOM,
                kind="text",
                text=client_id,
                data=None,
                sender=self.id,
                client_id=client_id,
                sender_key="anon:tab",
            )
            try:
                await self.writer.submit(message)
            except HistoryUnavailable as exc:
                self.errors.append(exc.ids)  # the error frame the client gets


class FailedSendsModel(RuleBasedStateMachine):
    """The client's typed order and unacknowledged ids are the model."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.history = IdempotentHistory()
        self.typed: list[str] = []
        self.unacked: list[str] = []
        self.writer = HistoryWriter(
            self.history,  # type: ignore[arg-type]
            self._publish,
            write_timeout=0.0,
            reject=self._reject,
        )
        self.socket = self.loop.run_until_complete(self._start())
        self.old_sockets: list[Socket] = []

    async def _start(self) -> Socket:
        self.writer.start()
        return Socket(self.writer)

    async def _connect(self) -> Socket:
        return Socket(self.writer)

    async def _publish(self, message: PendingMessage, saved: SavedMessage | None) -> None:
        if saved is not None and message.client_id in self.unacked:
            self.unacked.remove(message.client_id)  # the ack

    async def _reject(self, message: PendingMessage) -> None:
        return None  # the error frame: the client resends what is unacknowledged anyway

    def _run(self, turns: int = 30) -> None:
        async def turn() -> None:
            for _ in range(turns):
                await asyncio.sleep(0)

        self.loop.run_until_complete(turn())

    def _send(self, client_id: str) -> None:
        self.socket.frames.put_nowait(client_id)

    @rule()
    def type_a_message(self) -> None:
        client_id = str(len(self.typed))
        self.typed.append(client_id)
        self.unacked.append(client_id)
        self._send(client_id)

    @rule()
    def resend_unacknowledged(self) -> None:
        for client_id in list(self.unacked):
            self._send(client_id)

    @rule(down=st.booleans())
    def database(self, down: bool) -> None:
        self.history.down = down

    @rule(closed=st.booleans())
    def store_gate(self, closed: bool) -> None:
        if closed:
            self.history.gate.clear()
        else:
            self.history.gate.set()

    @rule()
    def reconnect(self) -> None:
        old = self.socket
        old.task.cancel()  # frames not yet handed to the writer are lost with the socket
        self.writer.forget(old.id)
        self.old_sockets.append(old)
        self.socket = self.loop.run_until_complete(self._connect())
        self.resend_unacknowledged()

    @rule(turns=st.integers(1, 200))
    def run(self, turns: int) -> None:
        self._run(min(max(turns, 1), 200))

    @invariant()
    def stored_in_typed_order_at_most_once(self) -> None:
        ids = [int(message.client_id or "-1") for message in self.history.rows]
        assert ids == sorted(set(ids)), f"stored {ids}"

    def teardown(self) -> None:
        try:
            self.history.down = False
            self.history.gate.set()
            for _ in range(len(self.typed) + 5):
                self._run(200)
                if not self.unacked:
                    break
                self.resend_unacknowledged()
            self._run(200)
            stored = [message.client_id for message in self.history.rows]
            assert stored == self.typed, f"stored {stored}, typed {self.typed}, unacked {self.unacked}"
            assert not self.unacked
        finally:
            self.loop.run_until_complete(self._stop())
            self.loop.close()

    async def _stop(self) -> None:
        for socket in [*self.old_sockets, self.socket]:
            socket.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await socket.task
        await self.writer.stop()


FailedSendsModel.TestCase.settings = model_settings()
test_failed_sends_model = FailedSendsModel.TestCase
