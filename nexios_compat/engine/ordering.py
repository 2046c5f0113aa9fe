"""Saved broadcasts reach local members in sequence order, per room; gaps are filled from history.

Two processes that save messages to the same room at the same time publish them
on the channel layer in whatever order their writes finish, so a hub can
receive seq 8 before seq 7. Each hub holds a broadcast that arrives ahead of a
missing one back until the gap closes (``RoomSequencer``, pure); a gap that
stays open (the publisher died after saving, or the layer was down) is filled
from history, which has every saved message because history is written before
it is sent (``RoomOrdering``, which also owns the timers).

A room has an epoch: which broadcasts belong to its current line of numbers is
decided from what the store says (``RoomEpochs``, in ``epochs``).

Nothing of a room overtakes a saved broadcast held behind a gap here: unsaved
broadcasts queue behind it (``offer``), and a socket's reply or close waits
for it (``settled``).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Iterable

from .. import metrics
from ..encoding import FrameCache
from .epochs import Deliver, ReadHead, ReadSince, RoomEpochs
from .sequencer import RoomSequencer

__all__ = ["Deliver", "ReadHead", "ReadSince", "RoomOrdering", "RoomSequencer"]

logger = logging.getLogger("nexios_compat.engine")

# What waits behind a held saved broadcast: an unsaved broadcast, or a reply waiting to go.
Behind = FrameCache | asyncio.Future[None]


class RoomOrdering(RoomEpochs):
    """One sequencer per local room, with the timers that fill gaps that stay open."""

    def __init__(
        self,
        deliver: Deliver,
        read_since: ReadSince,
        reorder_timeout: float,
        read_head: ReadHead | None = None,
    ) -> None:
        self.deliver = deliver
        self.read_since = read_since
        self.read_head = read_head
        self.reorder_timeout = reorder_timeout
        self.sequencers: dict[str, RoomSequencer] = {}
        # Per room, the epoch of the broadcasts being ordered, epochs left behind by a
        # flush (same numbers: still ordered), and epochs left behind at a restart (dropped).
        self.epochs: dict[str, str] = {}
        self._flushed: dict[str, set[str]] = {}
        self._retired: dict[str, set[str]] = {}
        # Per room, what waits for the held saved broadcasts up to a seq, in arrival order.
        self._behind: dict[str, collections.deque[tuple[int, Behind]]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._gap_timers: dict[str, asyncio.Task[None]] = {}
        # Broadcasts held back behind a gap, and gaps filled from history (diagnostics).
        self.held_back = 0
        self.gap_fills = 0

    def start(self, room: str, next_seq: int, epoch: str | None = None) -> None:
        """Begin ordering a room whose local members are to receive ``next_seq`` next (in ``epoch``)."""
        self.sequencers[room] = RoomSequencer(next_seq)
        self._retired.pop(room, None)
        self._flushed.pop(room, None)
        self._release_all(room)
        if epoch:
            self.epochs[room] = epoch
        else:
            self.epochs.pop(room, None)

    def next_seq(self, room: str) -> int | None:
        """The sequence number a room's local members receive next, if the room is ordered."""
        sequencer = self.sequencers.get(room)
        return sequencer.next_seq if sequencer is not None else None

    def forget(self, room: str) -> None:
        """Stop ordering a room (its last local member left)."""
        self.sequencers.pop(room, None)
        self.epochs.pop(room, None)
        self._retired.pop(room, None)
        self._flushed.pop(room, None)
        self._locks.pop(room, None)
        for _, waiting in self._behind.pop(room, ()):
            if isinstance(waiting, asyncio.Future) and not waiting.done():
                waiting.set_result(None)  # nobody is left to see the order
        timer = self._gap_timers.pop(room, None)
        if timer is not None:
            timer.cancel()

    def timers(self) -> list[asyncio.Task[None]]:
        """Return the running gap timers (to cancel them at shutdown)."""
        return list(self._gap_timers.values())

    def _lock(self, room: str) -> asyncio.Lock:
        lock = self._locks.get(room)
        if lock is None:
            lock = self._locks[room] = asyncio.Lock()
        return lock

    async def settled(self, rooms: Iterable[str]) -> None:
        """Wait until the saved broadcasts held back in ``rooms`` now are delivered (not later ones).

        A reply or close waits here, so it never overtakes a saved broadcast that
        reached this process ahead of another process's gap. Bounded by the gap
        fill (``reorder_timeout``, then history).
        """
        loop = asyncio.get_running_loop()
        waits = []
        for room in rooms:
            lock = self._locks.get(room)
            if lock is not None and lock.locked():
                async with lock:  # saved broadcasts of the room are being delivered now
                    pass
            barrier = self._barrier(room)
            if barrier is not None:
                future: asyncio.Future[None] = loop.create_future()
                self._behind.setdefault(room, collections.deque()).append((barrier, future))
                waits.append(future)
        for future in waits:
            await future

    def holding(self, room: str) -> bool:
        """Whether saved broadcasts of ``room`` are held behind a gap (what comes now waits for them)."""
        return self._barrier(room) is not None

    def _barrier(self, room: str) -> int | None:
        """The seq what arrives for ``room`` now must wait for (``None``: nothing to wait for)."""
        sequencer = self.sequencers.get(room)
        queued = self._behind.get(room)
        if queued:
            return queued[-1][0]  # behind what already waits, in order
        if sequencer is None or not sequencer.waiting:
            return None
        return max(sequencer.held)

    async def _release(self, room: str) -> None:
        """Deliver (or let go) what waited behind saved broadcasts delivered by now, in order."""
        sequencer = self.sequencers.get(room)
        queued = self._behind.get(room)
        while queued and (sequencer is None or queued[0][0] < sequencer.next_seq):
            _, waiting = queued.popleft()
            if isinstance(waiting, asyncio.Future):
                if not waiting.done():
                    waiting.set_result(None)
            else:
                await self.deliver(waiting)
        if not queued:
            self._behind.pop(room, None)

    def _release_all(self, room: str) -> list[FrameCache]:
        """Let every waiting reply go; return the unsaved broadcasts to deliver (a new numbering line)."""
        frames = []
        for _, waiting in self._behind.pop(room, ()):
            if isinstance(waiting, asyncio.Future):
                if not waiting.done():
                    waiting.set_result(None)
            else:
                frames.append(waiting)
        return frames

    async def offer(self, cache: FrameCache) -> None:
        """Deliver a broadcast; saved ones in sequence order, holding back those ahead of a gap.

        An unsaved broadcast goes as it comes, unless a saved one is held back in
        its room: then it waits behind it.
        """
        sequencer = self.sequencers.get(cache.room)
        if sequencer is None:
            await self.deliver(cache)  # no local member (or unordered for now): nothing to keep
            return
        if cache.seq is None:
            lock = self._lock(cache.room)
            if not lock.locked() and self._barrier(cache.room) is None:
                await self.deliver(cache)  # the common case: nothing held, nothing being delivered
                return
            # Saved broadcasts are being delivered or are held: take a place behind them.
            async with lock:
                barrier = self._barrier(cache.room)
                if barrier is None or self.sequencers.get(cache.room) is not sequencer:
                    await self.deliver(cache)
                else:
                    self._behind.setdefault(cache.room, collections.deque()).append((barrier, cache))
            return
        async with self._lock(cache.room):
            if self.sequencers.get(cache.room) is not sequencer:
                return
            if not await self._in_epoch(sequencer, cache):
                return
            ready = sequencer.offer(cache)
            if cache.seq in sequencer.held:
                self.held_back += 1
                metrics.HELD_BACK.inc()
            for frame in ready:
                await self.deliver(frame)
            await self._release(cache.room)
            if ready or not sequencer.waiting:
                self._cancel_gap_timer(cache.room)
            if sequencer.waiting and cache.room not in self._gap_timers:
                self._gap_timers[cache.room] = asyncio.create_task(
                    self._fill_later(cache.room), name="nexios_compat.hub-gap"
                )

    def _cancel_gap_timer(self, room: str) -> None:
        timer = self._gap_timers.pop(room, None)
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()

    async def _fill_later(self, room: str) -> None:
        await asyncio.sleep(self.reorder_timeout)
        if self._gap_timers.get(room) is asyncio.current_task():
            del self._gap_timers[room]
        await self.fill(room)

    async def fill(self, room: str) -> None:
        """Deliver a room's saved messages that never arrived live, in order."""
        sequencer = self.sequencers.get(room)
        if sequencer is None:
            return
        upto: int | None
        try:
            saved, upto = await self.read_since(room, sequencer.next_seq - 1)
        except Exception:
            # Better late and with a gap than never: deliver what was held back.
            logger.exception("Reading %r's history to fill a gap failed", room)
            saved, upto = [], None
        async with self._lock(room):
            if self.sequencers.get(room) is not sequencer:
                return
            if await self._history_restarted(sequencer, room, saved, upto):
                try:  # the read was of the old line's numbers: read the new line from its start
                    saved, upto = await self.read_since(room, 0)
                except Exception:
                    logger.exception("Reading %r's history after it was recreated failed", room)
                    saved, upto = [], None
            ready = sequencer.fill(saved, upto)
            if ready:
                self.gap_fills += 1
                metrics.GAP_FILLS.inc()
            for frame in ready:
                await self.deliver(frame)
            await self._release(room)
            if sequencer.waiting and room not in self._gap_timers:
                # Held behind a number saved after history was read: look again later.
                self._gap_timers[room] = asyncio.create_task(
                    self._fill_later(room), name="nexios_compat.hub-gap"
                )

    async def fill_all(self) -> None:
        """Fill every local room from history (after the layer lost messages)."""
        for room in list(self.sequencers):
            await self.fill(room)
