"""Saved broadcasts reach local members in sequence order, per room; gaps are filled from history.

Two processes that save messages to the same room at the same time publish them
on the channel layer in whatever order their writes finish, so a hub can
receive seq 8 before seq 7. Each hub holds a broadcast that arrives ahead of a
missing one back until the gap closes (``RoomSequencer``, pure); a gap that
stays open (the publisher died after saving, or the layer was down) is filled
from history, which has every saved message because history is written before
it is sent (``RoomOrdering``, which also owns the timers and epochs).

A room has an epoch (``Room.epoch``): a flush starts a new one and numbering
goes on; a recreated room starts a new one at seq 1. A saved broadcast of an
epoch this process has not seen for the room moves the ordering to it: on a
restart, at seq 1, and broadcasts of the epoch left behind are dropped (their
numbers would collide with the new ones).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

from ..encoding import FrameCache

logger = logging.getLogger("nexios_compat.engine")

Deliver = Callable[[FrameCache], Awaitable[None]]
# Read a room's saved messages after a sequence number, as frames (any order), with
# the room's last seq at that moment.
ReadSince = Callable[[str, int], Awaitable[tuple[list[FrameCache], int]]]


class RoomSequencer:
    """The delivery order of one room's saved broadcasts in one process."""

    __slots__ = ("held", "next_seq")

    def __init__(self, next_seq: int) -> None:
        # The sequence number the local members are to receive next.
        self.next_seq = next_seq
        # Broadcasts that arrived ahead of a missing one, by sequence number.
        self.held: dict[int, FrameCache] = {}

    @property
    def waiting(self) -> bool:
        """Whether a gap holds broadcasts back."""
        return bool(self.held)

    def offer(self, cache: FrameCache) -> list[FrameCache]:
        """Take one saved broadcast; return those now deliverable, in order (maybe none)."""
        seq = cache.seq
        assert seq is not None
        if seq < self.next_seq:
            return []  # already delivered (or saved before this process subscribed)
        if seq > self.next_seq:
            self.held[seq] = cache
            return []
        ready = [cache]
        self.next_seq += 1
        while self.next_seq in self.held:
            ready.append(self.held.pop(self.next_seq))
            self.next_seq += 1
        return ready

    def fill(self, saved: Iterable[FrameCache], upto: int | None = None) -> list[FrameCache]:
        """Close gaps with messages read from history; return what to deliver, in order.

        ``upto`` is the room's last seq when history was read: numbers up to it
        missing from history too (pruned or flushed) are skipped. A number past it
        was not saved yet when history was read (it may be committing now): what
        is held behind it stays held. Without ``upto`` every gap is skipped.
        """
        frames = {cache.seq: cache for cache in saved if cache.seq is not None}
        frames.update(self.held)
        self.held.clear()
        ready = []
        for seq in sorted(frames):
            if seq < self.next_seq:
                continue
            if seq > self.next_seq and upto is not None and seq - 1 > upto:
                self.held = {later: frames[later] for later in frames if later >= seq}
                break
            ready.append(frames[seq])
            self.next_seq = seq + 1
        return ready


class RoomOrdering:
    """One sequencer per local room, with the timers that fill gaps that stay open."""

    def __init__(self, deliver: Deliver, read_since: ReadSince, reorder_timeout: float) -> None:
        self.deliver = deliver
        self.read_since = read_since
        self.reorder_timeout = reorder_timeout
        self.sequencers: dict[str, RoomSequencer] = {}
        # Per room, the epoch of the broadcasts being ordered, and epochs left behind at a restart.
        self.epochs: dict[str, str] = {}
        self._retired: dict[str, set[str]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._gap_timers: dict[str, asyncio.Task[None]] = {}
        # Broadcasts held back behind a gap, and gaps filled from history (diagnostics).
        self.held_back = 0
        self.gap_fills = 0

    def start(self, room: str, next_seq: int, epoch: str | None = None) -> None:
        """Begin ordering a room whose local members are to receive ``next_seq`` next (in ``epoch``)."""
        self.sequencers[room] = RoomSequencer(next_seq)
        self._retired.pop(room, None)
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
        self._locks.pop(room, None)
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

    async def offer(self, cache: FrameCache) -> None:
        """Deliver a broadcast; saved ones in sequence order, holding back those ahead of a gap."""
        sequencer = self.sequencers.get(cache.room)
        if cache.seq is None or sequencer is None:
            await self.deliver(cache)  # unsaved: as it comes; no local member: nothing to do
            return
        async with self._lock(cache.room):
            if self.sequencers.get(cache.room) is not sequencer:
                return
            if cache.epoch and cache.epoch != self.epochs.get(cache.room):
                if cache.epoch in self._retired.get(cache.room, ()):
                    return  # a late broadcast of the room's previous life
                await self._enter_epoch(sequencer, cache)
            ready = sequencer.offer(cache)
            if cache.seq in sequencer.held:
                self.held_back += 1
            for frame in ready:
                await self.deliver(frame)
            if ready or not sequencer.waiting:
                self._cancel_gap_timer(cache.room)
            if sequencer.waiting and cache.room not in self._gap_timers:
                self._gap_timers[cache.room] = asyncio.create_task(
                    self._fill_later(cache.room), name="nexios_compat.hub-gap"
                )

    async def _enter_epoch(self, sequencer: RoomSequencer, cache: FrameCache) -> None:
        """Follow the room into the epoch ``cache`` carries (the lock is held)."""
        assert cache.seq is not None and cache.epoch is not None
        room, previous = cache.room, self.epochs.get(cache.room)
        self.epochs[room] = cache.epoch
        if cache.seq >= sequencer.next_seq or previous is None:
            # A flush (numbering goes on), or a store that told no epoch at the start.
            return
        # The room restarted at 1: what waited behind a gap of the old epoch can no
        # longer be completed from history; deliver it, then order the new epoch.
        for frame in sequencer.fill([]):
            await self.deliver(frame)
        self._retired.setdefault(room, set()).add(previous)
        sequencer.next_seq = 1
        self._cancel_gap_timer(room)

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
            ready = sequencer.fill(saved, upto)
            if ready:
                self.gap_fills += 1
            for frame in ready:
                await self.deliver(frame)
            if sequencer.waiting and room not in self._gap_timers:
                # Held behind a number saved after history was read: look again later.
                self._gap_timers[room] = asyncio.create_task(
                    self._fill_later(room), name="nexios_compat.hub-gap"
                )

    async def fill_all(self) -> None:
        """Fill every local room from history (after the layer lost messages)."""
        for room in list(self.sequencers):
            await self.fill(room)
