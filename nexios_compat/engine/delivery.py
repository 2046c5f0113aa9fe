"""Writing broadcasts to local members: live, and replayed from history on resume."""

from __future__ import annotations

import logging

from ..encoding import FrameCache, pack
from ..types import ChannelMessageDC
from .protocols import LocalMember
from .registry import LocalRegistry, Slot

logger = logging.getLogger("nexios_compat.engine")


def saved_frame(room: str, message: ChannelMessageDC, epoch: str | None = None) -> FrameCache:
    """Return the frames of a message read from history (in the room's ``epoch``)."""
    kind, text, data = pack(message.payload)
    return FrameCache(room, kind, text, data, message.seq, epoch)


async def deliver(registry: LocalRegistry, cache: FrameCache) -> None:
    """Write one broadcast to every local member of its room."""
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
        await member.send_frame(cache.frame(member.payload_type, member.envelope))
        last = max(last, cache.seq or last)
    while slot.buffer:
        pending, slot.buffer = slot.buffer, []
        for cache in pending:
            if cache.seq is not None:
                if cache.seq <= last:
                    continue
                last = cache.seq
            await member.drain()
            await member.send_frame(cache.frame(member.payload_type, member.envelope))
    if live_next is not None and last >= live_next:
        # The replay read messages the room's live stream has not brought yet:
        # when they come, this member has them already.
        slot.replayed = last
