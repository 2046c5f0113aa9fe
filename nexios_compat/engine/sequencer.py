"""One room's saved broadcasts in sequence order: what arrived ahead of a gap waits (pure, no I/O)."""

from __future__ import annotations

from collections.abc import Iterable

from ..encoding import FrameCache


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
