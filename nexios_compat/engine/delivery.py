"""Writing broadcasts to local members: live, and replayed from history on resume."""

from __future__ import annotations

import logging

from ..encoding import FrameCache, pack
from ..exceptions import HistoryUnavailable
from ..types import ChannelMessageDC
from .protocols import LocalMember
from .registry import LocalRegistry, Slot

logger = logging.getLogger("nexios_compat.engine")


def saved_frame(room: str, message: ChannelMessageDC, epoch: str | None = None) -> FrameCache:
    """Return the frames of a message read from history (in the room's ``epoch``)."""
    kind, text, data = pack(message.payload)
    return FrameCache(room, kind, text, data, message.seq, epoch)


class ReplayOverflow(HistoryUnavailable):
    """More live broadcasts arrived during a replay than ``RESUME_MAX_BUFFERED`` lets one member hold."""


class ReplayBuffer(list[FrameCache]):
    """Live broadcasts held while a replay is read and sent, up to a count and bytes.

    Past either it drops what it holds (nothing is sent from it) and remembers
    the highest seq it saw, so the resume can answer ``recovered: false`` from
    there or fail; it never sends a stream with a hole in it.
    """

    def __init__(self, max_count: int | None = None, max_bytes: int | None = None) -> None:
        super().__init__()
        self.max_count = max_count
        self.max_bytes = max_bytes
        self.size = 0
        self.overflowed = False
        # The highest seq held or dropped since the buffer was last reset.
        self.highest: int | None = None

    def append(self, cache: FrameCache) -> None:
        """Hold one broadcast, or drop everything once a bound is passed."""
        if cache.seq is not None and (self.highest is None or cache.seq > self.highest):
            self.highest = cache.seq
        if self.overflowed:
            return
        size = frame_size(cache)
        if (self.max_count is not None and len(self) >= self.max_count) or (
            self.max_bytes is not None and self.size + size > self.max_bytes
        ):
            self.overflowed = True
            self.clear()
            self.size = 0
            return
        super().append(cache)
        self.size += size

    def take(self) -> list[FrameCache]:
        """Return what is held and start empty again (the bounds count afresh)."""
        pending = list(self)
        self.clear()
        self.size = 0
        return pending

    def reset(self) -> None:
        """Forget an overflow that the resume answered (``recovered: false``)."""
        self.take()
        self.overflowed = False
        self.highest = None


def frame_size(cache: FrameCache) -> int:
    """Return the bytes a broadcast holds (its text counted by characters: cheap, and close)."""
    return len(cache.data) if cache.data is not None else len(cache.text or "")


def overflowed(buffer: list[FrameCache] | None) -> bool:
    """Whether a slot's replay buffer passed its bounds."""
    return isinstance(buffer, ReplayBuffer) and buffer.overflowed


async def deliver(registry: LocalRegistry, cache: FrameCache) -> None:
    """Write one broadcast to every local member of its room (framed once where the server allows)."""
    slots = registry.rooms.get(cache.room)
    if not slots:
        return
    for member, slot in list(slots.items()):
        if slot.buffer is not None:
            slot.buffer.append(cache)
            continue
        if slot.replayed is not None and cache.seq is not None:
            if cache.seq <= slot.replayed:
                continue
            slot.replayed = None  # saved ones come in order: no more repeats
        try:
            # Under daphne the frame is framed once and its bytes written to each socket.
            if not member.write_prepared(cache):
                await member.send_frame(cache.frame(member.payload_type, member.envelope))
        except Exception:  # one broken socket must not stop the others
            logger.debug("Delivery to channel %s failed", member.id, exc_info=True)


async def replay(
    member: LocalMember, slot: Slot, saved: list[FrameCache], since: int, live_next: int | None
) -> None:
    """Send saved messages after ``since``, then what arrived meanwhile, without duplicates.

    ``slot.buffer`` collected live broadcasts while history was read; ``live_next``
    is the seq the room's live stream delivers next (``None``: not ordered here).
    """
    last = since
    for cache in saved:
        await member.drain()  # a long replay waits for the client to read
        if overflowed(slot.buffer):
            raise ReplayOverflow("Too many live broadcasts arrived during the replay")
        await member.send_frame(cache.frame(member.payload_type, member.envelope))
        last = max(last, cache.seq or last)
    while slot.buffer:
        if isinstance(slot.buffer, ReplayBuffer):
            pending = slot.buffer.take()
        else:
            pending, slot.buffer = slot.buffer, []
        for cache in pending:
            if cache.seq is not None:
                if cache.seq <= last:
                    continue
                last = cache.seq
            await member.drain()
            await member.send_frame(cache.frame(member.payload_type, member.envelope))
        if overflowed(slot.buffer):
            raise ReplayOverflow("Too many live broadcasts arrived during the replay")
    if overflowed(slot.buffer):
        raise ReplayOverflow("Too many live broadcasts arrived during the replay")
    if live_next is not None and last >= live_next:
        # The replay read messages the room's live stream has not brought yet:
        # when they come, this member has them already.
        slot.replayed = last
