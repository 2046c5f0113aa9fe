"""The history writer: stores a process's saved messages in batches, then delivers them in order.

``submit`` returns once the message is accepted (queued, in order); the writer
commits everything queued in one transaction and only then hands each message
to ``publish``, so nothing reaches a member before it is stored. With
``HISTORY_WAIT_FOR_COMMIT`` the sender waits for its commit instead. The queue
is bounded (``HISTORY_MAX_PENDING`` messages, ``HISTORY_MAX_PENDING_BYTES``):
past it ``submit`` waits, so a stalled database holds senders back instead of
memory growing; nothing accepted is dropped for lack of room.

When the database is unreachable or stalled, a batch is retried until its
oldest message has waited ``HISTORY_WRITE_TIMEOUT`` (``write_timeout``); then
its messages fail with ``HistoryUnavailable`` and are not sent. While the
writer is failing, ``submit`` of a saved message waits for its outcome, so the
sender learns it (instead of returning at once with a message that may be lost).

A batch the store refuses for its content (a non-transient error: bad data,
a constraint) is stored again room by room, then the refusing room message by
message: only the messages at fault fail, every other one commits, in order.
A failed message's sender learns it: at once if it waited, else by an error
frame and at its next own send (``reject``), as with ``HistoryUnavailable``.
What a store is known not to hold (``check``) is refused before it is queued.

A client's sends with ids keep the order they were sent in (``failed_sends``):
once one fails with ``HistoryUnavailable``, its socket's other sends with ids
to that room fail with it, queued or to come, until the failed ones are sent
again, oldest first.

Each batch is stored by ``batches``. A room whose row another transaction
holds is set aside (``locked_rooms``) while the batch's other rooms commit:
each room keeps its order, rooms do not wait for each other. So delivery is in
acceptance order per room, not across rooms.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import typing
from collections.abc import Awaitable, Callable

from .. import metrics
from ..exceptions import HistoryUnavailable
from ..stores.history import PendingMessage, SavedMessage, payload_size
from ..stores.services import HistoryService
from .batches import TRANSIENT, BatchStore, Outcome
from .failed_sends import FailedSends, key_of, unavailable
from .locked_rooms import Entry, HeldRooms

__all__ = ["TRANSIENT", "HistoryWriter"]

logger = logging.getLogger("nexios_compat.stores.history")

Publish = Callable[[PendingMessage, SavedMessage | None], Awaitable[None]]
# Told about a message that failed with HistoryUnavailable after its sender moved on.
Reject = Callable[[PendingMessage], Awaitable[None]]
# Raises ``ValueError`` for a message the store cannot hold (checked before it is queued).
Check = Callable[[PendingMessage], None]


class HistoryWriter:
    """One per hub: the ordered, bounded queue of messages on their way to history and members."""

    def __init__(
        self,
        history: HistoryService,
        publish: Publish,
        *,
        batch_size: int = 500,
        max_pending: int = 10_000,
        max_pending_bytes: int = 16 * 1024 * 1024,
        write_timeout: float | None = 10.0,
        lock_timeout: float = 0.1,
        reject: Reject | None = None,
        check: Check | None = None,
        alive: Callable[[typing.Any], bool] | None = None,
    ) -> None:
        self.history = history
        self.publish = publish
        self.batch_size = max(1, batch_size)
        self.max_pending = max(1, max_pending)
        self.max_pending_bytes = max(1, max_pending_bytes)
        self.write_timeout = write_timeout
        self.lock_timeout = lock_timeout
        self.reject = reject
        self.check = check
        self._queue: collections.deque[Entry] = collections.deque()
        self._held = HeldRooms(write_timeout)
        # Accepted and not yet delivered (queued, held or in a batch): what the bounds count.
        self._count = 0
        self._bytes = 0
        self._space = asyncio.Event()
        self._space.set()
        self._wakeup = asyncio.Event()
        # Entries are numbered as accepted; per room, the numbers not yet handled, oldest
        # first (a room's entries are handled in order, rooms independently of each other).
        self._tickets = 0
        self._open: dict[str, collections.deque[int]] = {}
        self._progress = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._batches = BatchStore(history, self._held, write_timeout, lock_timeout)
        self._failed = FailedSends(alive=alive)
        # Senders held back because the queue was full (the batches count the rest).
        self.waits = 0

    # What the batches counted, for diagnostics and ``/health``.

    @property
    def failing(self) -> bool:
        """True from a failed attempt to store until the next success."""
        return self._batches.failing

    @property
    def transactions(self) -> int:
        """Transactions that stored messages."""
        return self._batches.transactions

    @property
    def stored(self) -> int:
        """Messages stored."""
        return self._batches.stored

    @property
    def failed(self) -> int:
        """Attempts to store a batch that failed."""
        return self._batches.failed

    @property
    def unavailable(self) -> int:
        """Messages that failed with ``HistoryUnavailable``."""
        return self._batches.unavailable

    @property
    def set_aside(self) -> int:
        """Times a room was set aside because its row was busy."""
        return self._batches.set_aside

    @property
    def refused(self) -> int:
        """Messages the store refused (found by storing their batch again, piece by piece)."""
        return self._batches.refused

    @property
    def pending(self) -> int:
        """Messages accepted and not yet delivered."""
        return self._count

    @property
    def held(self) -> int:
        """Rooms set aside now because another transaction holds their row."""
        return len(self._held)

    def pending_in(self, room: str) -> bool:
        """Whether messages for ``room`` wait to be stored (a later unsaved one must queue behind)."""
        return bool(self._open.get(room))

    def start(self) -> None:
        """Start the background writer task."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="nexios_compat.stores.history-writer")

    async def stop(self) -> None:
        """Store and deliver everything queued, then stop the task."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def submit(self, message: PendingMessage, save: bool = True, wait: bool = False) -> None:
        """Queue a message behind those before it; with ``wait``, return once it is delivered.

        Waits first while the queue is full. A failed save raises here only with ``wait``;
        a message the store cannot hold raises ``ValueError`` at once, and is not queued.
        """
        if save and self.check is not None:
            self.check(message)
        if save:
            self._failed.admit(message)  # behind its socket's failed sends: fails too
        size = payload_size(message)
        while self._full(size):
            self.waits += 1
            self._space.clear()
            await self._space.wait()
        # A failing database or a busy room: the sender waits for the outcome (bounded by write_timeout).
        wait = wait or (save and (self.failing or message.room in self._held))
        loop = asyncio.get_running_loop()
        done = loop.create_future() if wait else None
        self._tickets += 1
        self._queue.append(Entry(message, save, size, done, self._tickets, loop.time()))
        self._open.setdefault(message.room, collections.deque()).append(self._tickets)
        self._count += 1
        self._bytes += size
        self._wakeup.set()
        if done is not None:
            await done

    def _full(self, size: int) -> bool:
        if not self._count:
            return False  # one message always fits, however large
        return self._count >= self.max_pending or self._bytes + size > self.max_pending_bytes

    async def flush(self) -> None:
        """Wait until everything accepted so far is stored and delivered (read your writes)."""
        await self._wait_for(None, self._tickets)

    async def flush_rooms(self, rooms: typing.Iterable[str]) -> None:
        """Wait until what was accepted so far for ``rooms`` is delivered.

        A socket's own frames wait here behind the saved broadcasts of its rooms,
        so a handler's direct send or close never overtakes a broadcast it made.
        """
        if self._open:
            await self._wait_for(list(rooms), self._tickets)

    def _handled(self, rooms: list[str] | None, ticket: int) -> bool:
        """Whether every entry numbered up to ``ticket`` (of ``rooms``, or of all) was handled."""
        opened = self._open.values() if rooms is None else (self._open.get(room) for room in rooms)
        return all(not tickets or tickets[0] > ticket for tickets in opened)

    async def _wait_for(self, rooms: list[str] | None, ticket: int) -> None:
        if self._handled(rooms, ticket) or self._task is None or self._task.done():
            return
        async with self._progress:
            await self._progress.wait_for(lambda: self._handled(rooms, ticket) or self._task is None)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wait_for_work(loop)
            while self._queue or self._held.due(loop.time()):
                await self._write_batches()
            if self._closing and not self._held:
                return

    async def _wait_for_work(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wait for a message, or until a held room is to be tried again."""
        retry = self._held.next_retry()
        if retry is None:
            await self._wakeup.wait()
        elif retry > loop.time():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), retry - loop.time())
        self._wakeup.clear()

    async def _write_batches(self) -> None:
        """Store batches one after another; deliver each while the next one is being stored.

        Saves stay strictly sequential (a retried batch must not let a later one
        take lower numbers); only a batch's delivery overlaps the next one's save.
        """
        batch = self._take()
        if not batch:
            return
        outcomes = self._keep_order(await self._batches.save(batch))
        while True:
            following = self._take()
            saving = asyncio.ensure_future(self._batches.save(following)) if following else None
            try:
                await self._deliver(outcomes)
            finally:
                if saving is not None:
                    outcomes = self._keep_order(await saving)
            if saving is None:
                return

    def _keep_order(self, outcomes: list[Outcome]) -> list[Outcome]:
        """Fail the queued sends with ids of each socket whose send with an id just failed.

        Called as a batch's outcome is known, before the next batch is taken: every
        later send of that socket to that room is still queued or held, so none can
        be stored ahead of the failed one's resend.
        """
        keys = set()
        for index, (entry, record, error) in enumerate(outcomes):
            key = key_of(entry.message)
            if key is not None and isinstance(error, HistoryUnavailable):
                keys.add(key)
                self._failed.failed(key, typing.cast(str, entry.message.client_id))
                outcomes[index] = (entry, record, unavailable(entry.message, error))
        if not keys:
            return outcomes

        def behind(entry: Entry) -> bool:
            return entry.save and key_of(entry.message) in keys

        swept = [entry for entry in self._queue if behind(entry)] + self._held.remove(behind)
        if swept:
            self._queue = collections.deque(entry for entry in self._queue if not behind(entry))
        for entry in sorted(swept, key=lambda entry: entry.ticket):
            key = typing.cast(tuple[typing.Any, str], key_of(entry.message))
            self._failed.failed(key, typing.cast(str, entry.message.client_id))
            outcomes.append((entry, None, unavailable(entry.message)))
        return outcomes

    def forget(self, sender: typing.Any) -> None:
        """Drop what is kept of a socket's failed sends (it ended)."""
        self._failed.forget(sender)

    def _take(self) -> list[Entry]:
        """The next batch: held rooms due for a retry (whole), then queued entries of rooms not held."""
        now = asyncio.get_running_loop().time()
        batch: list[Entry] = []
        for room in self._held.due(now):
            batch.extend(self._held.take(room))
        while self._queue and len(batch) < self.batch_size:
            entry = self._queue.popleft()
            if entry.message.room in self._held:
                self._held.follow(entry)  # behind its room's held messages, in order
            else:
                batch.append(entry)
        return batch

    async def _deliver(self, outcomes: list[Outcome]) -> None:
        loop = asyncio.get_running_loop()
        for entry, record, error in outcomes:
            try:
                if error is not None:
                    if self._failed and not isinstance(error, HistoryUnavailable):
                        self._failed.done(entry.message)  # refused: it will not be stored
                    if entry.done is None and entry.save and self.reject is not None:
                        # Its sender moved on: it learns at its next own send.
                        await self.reject(entry.message)
                    _settle(entry.done, error=error)
                    continue
                if self._failed:  # most of the time nothing failed: no lookup per message
                    self._failed.done(entry.message)
                await self.publish(entry.message, record)
                metrics.FANOUT_LATENCY.observe(loop.time() - entry.accepted)
            except Exception as exc:
                _settle(entry.done, error=exc)
                continue
            finally:
                # Only now: an unsaved send to this room must not overtake it.
                self._release(entry)
            _settle(entry.done, result=record)
        async with self._progress:
            self._progress.notify_all()

    def _release(self, entry: Entry) -> None:
        room = entry.message.room
        tickets = self._open.get(room)
        if tickets:
            if tickets[0] == entry.ticket:
                tickets.popleft()
            else:
                tickets.remove(entry.ticket)
            if not tickets:
                del self._open[room]
        self._count -= 1
        self._bytes -= entry.size
        self._space.set()


def _settle(
    future: asyncio.Future[SavedMessage | None] | None,
    result: SavedMessage | None = None,
    error: Exception | None = None,
) -> None:
    if future is None or future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
