"""Which of a room's saved broadcasts belong to its current line of numbers, as the store says.

A room has an epoch (``Room.epoch``): a flush starts a new one and numbering
goes on; a recreated room starts a new one at seq 1. A saved broadcast of an
epoch this process has not seen for the room is checked against the store
(``read_head``): only the room's current epoch is entered, on a restart at seq
1 (broadcasts of the epoch left behind are dropped from then on: their numbers
would collide with the new ones), on a flush with the numbering going on (the
epoch left behind stays on the same line of numbers). A broadcast of any other
epoch is a late one of a past life and is dropped; a seq comparison alone never
moves the room (a late pre-flush duplicate would otherwise retire the current
epoch and silence the room).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from ..encoding import FrameCache
from .sequencer import RoomSequencer

logger = logging.getLogger("nexios_compat.engine")

Deliver = Callable[[FrameCache], Awaitable[None]]
# Read a room's saved messages after a sequence number, as frames (any order), with
# the room's last seq at that moment.
ReadSince = Callable[[str, int], Awaitable[tuple[list[FrameCache], int]]]
# Read a room's last seq and epoch as the store has them now.
ReadHead = Callable[[str], Awaitable[tuple[int, str]]]


class RoomEpochs:
    """The epoch side of ``RoomOrdering``: per room, the epoch ordered, and epochs left behind."""

    deliver: Deliver
    read_since: ReadSince
    read_head: ReadHead | None
    # Per room, the epoch of the broadcasts being ordered, epochs left behind by a
    # flush (same numbers: still ordered), and epochs left behind at a restart (dropped).
    epochs: dict[str, str]
    _flushed: dict[str, set[str]]
    _retired: dict[str, set[str]]

    def _release_all(self, room: str) -> list[FrameCache]:
        raise NotImplementedError

    def _cancel_gap_timer(self, room: str) -> None:
        raise NotImplementedError

    async def _in_epoch(self, sequencer: RoomSequencer, cache: FrameCache) -> bool:
        """Whether ``cache`` belongs to the room's numbering line, following the room into a new one.

        The lock is held. An unknown epoch is checked against the store: only the
        room's current epoch moves the ordering; any other is a past life's.
        """
        assert cache.seq is not None
        room, epoch, current = cache.room, cache.epoch, self.epochs.get(cache.room)
        if not epoch or epoch == current or epoch in self._flushed.get(room, ()):
            return True
        if epoch in self._retired.get(room, ()):
            return False  # a late broadcast of the room's previous life
        if current is None:
            self.epochs[room] = epoch  # a store that told no epoch at the start
            return True
        if self.read_head is None:
            # No store to ask (unit tests): a number below what was delivered means a restart.
            restart = cache.seq < sequencer.next_seq
        else:
            try:
                last_seq, now = await self.read_head(room)
            except Exception:
                logger.warning("Cannot read %r's epoch; dropping a broadcast of epoch %r", room, epoch)
                return False  # the next one of that epoch asks again
            if now != epoch:
                # Not the room's epoch (a late one of a life before the current one).
                self._retired.setdefault(room, set()).add(epoch)
                return False
            restart = await self._is_restart(sequencer, room, epoch, last_seq, cache.seq)
        if restart:
            await self._restart(sequencer, room, current)
        else:
            self._flushed.setdefault(room, set()).add(current)
        self.epochs[room] = epoch
        return True

    async def _is_restart(
        self, sequencer: RoomSequencer, room: str, epoch: str, last_seq: int, seen: int | None = None
    ) -> bool:
        """Whether the room's current ``epoch`` (as the store says) starts a new line of numbers.

        A flush numbers on past every message of the epoch it left; a recreated
        room starts at 1. So the new epoch having a number at or below the highest
        seq this process delivered or holds (``mark``), or starting at 1, means a
        new line (a flush of a room that had no message yet is the same thing).
        ``seen`` is one of its numbers already at hand; otherwise history is asked
        (a restart whose first messages retention already deleted reads as a flush).
        """
        mark = max(sequencer.next_seq - 1, max(sequencer.held, default=0))
        if last_seq < mark or (seen is not None and (seen <= mark or seen == 1)):
            return True
        try:
            saved, _ = await self.read_since(room, 0)
        except Exception:
            logger.warning("Cannot read %r's history; taking epoch %r for a flush", room, epoch)
            return False
        lowest = min((cache.seq for cache in saved if cache.epoch == epoch and cache.seq), default=None)
        return lowest is not None and (lowest <= mark or lowest == 1)

    async def _history_restarted(
        self, sequencer: RoomSequencer, room: str, saved: list[FrameCache], upto: int | None
    ) -> bool:
        """Follow the epoch history was read in (the lock is held); return whether the room restarted.

        History tells the room's current epoch: a fill must move the ordering to it
        as a live broadcast would, or the first live one of that epoch (already
        delivered from history) would be taken for a restart and delivered twice;
        and broadcasts held behind a gap of a line that ended must not wait forever.
        """
        epoch = next((cache.epoch for cache in saved if cache.epoch), None)
        last_seq = upto
        if epoch is None and self.read_head is not None and sequencer.waiting:
            try:
                last_seq, epoch = await self.read_head(room)
            except Exception:
                return False  # the fill goes on as before; the next one asks again
        current = self.epochs.get(room)
        if not epoch or epoch == current or epoch in self._flushed.get(room, ()):
            return False
        self.epochs[room] = epoch
        if current is None:
            return False
        seen = min((cache.seq for cache in saved if cache.seq is not None), default=None)
        restart = (
            await self._is_restart(sequencer, room, epoch, last_seq, seen)
            if last_seq is not None
            else bool(seen is not None and seen < sequencer.next_seq)
        )
        if restart:
            await self._restart(sequencer, room, current)
            return True
        self._flushed.setdefault(room, set()).add(current)
        return False

    async def _restart(self, sequencer: RoomSequencer, room: str, previous: str) -> None:
        """The room was recreated (seq 1 again): close the old line, then order the new one."""
        # What waited behind a gap of the old epoch can no longer be completed from
        # history; deliver it, then what queued behind it, then order the new epoch.
        for frame in sequencer.fill([]):
            await self.deliver(frame)
        for frame in self._release_all(room):
            await self.deliver(frame)
        retired = self._retired.setdefault(room, set())
        retired.add(previous)
        retired.update(self._flushed.pop(room, ()))
        sequencer.next_seq = 1
        self._cancel_gap_timer(room)
