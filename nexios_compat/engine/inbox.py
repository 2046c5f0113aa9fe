"""The hub's inbox: this process's layer messages, each handed to the part it concerns."""

from __future__ import annotations

import asyncio
import collections
import logging
import typing

from channels.layers import BaseChannelLayer

from . import wire
from .ordering import RoomOrdering
from .outbox import Outbox
from .presence.tracker import PresenceTracker
from .recovery import LayerRecovery
from .registry import LocalRegistry

logger = logging.getLogger("nexios_compat.hub")


class InboxHandler(typing.Protocol):
    """What the inbox hands layer messages to (the ``Hub``): the parts they concern, and a few acts."""

    process_id: str
    layer: BaseChannelLayer
    registry: LocalRegistry
    ordering: RoomOrdering
    outbox: Outbox
    recovery: LayerRecovery
    tracker: PresenceTracker
    received: collections.Counter[str]

    async def handle(self, message: wire.LayerMessage) -> None:
        """Act on one layer message."""

    async def close_local(self, room: str | None, code: int = 1000, reason: str = "") -> int:
        """Close local members (of one room, or all); return how many."""

    async def flush_local(self) -> None:
        """Take every local member out of every room."""

    def spawn(self, coro: typing.Coroutine[typing.Any, typing.Any, None], name: str) -> None:
        """Run a background task that stopping the hub cancels."""


async def read(hub: InboxHandler) -> None:
    """Receive layer messages for this process and act on them."""
    failures = 0
    while True:
        try:
            message = await hub.layer.receive(hub.recovery.channel)
        except asyncio.CancelledError:
            raise
        except Exception:
            failures += 1
            if failures == 1:
                logger.warning("Channel layer receive failed; retrying", exc_info=True)
            # Whatever broke may have taken our subscriptions with it (a
            # restarted Redis has none): have them re-added once it answers.
            hub.recovery.failed()
            await asyncio.sleep(min(0.05 * 2**failures, 1.0))
            continue
        failures = 0
        hub.received[str(message.get("type"))] += 1
        try:
            await hub.handle(message)
        except Exception:
            logger.exception("Handling layer message %r failed", message.get("type"))


async def handle(hub: InboxHandler, message: wire.LayerMessage) -> None:
    """Act on one layer message."""
    parsed = wire.parse(message)
    if isinstance(parsed, wire.Fanout | wire.FanoutRooms) and parsed.origin == hub.process_id:
        # Our own were delivered when sent; reading one back paces the outbox.
        if parsed.stamp is not None:
            hub.outbox.echoed(parsed.stamp)
    elif isinstance(parsed, wire.Fanout):
        for cache in parsed.frames:
            await hub.ordering.offer(cache)
    elif isinstance(parsed, wire.FanoutRooms):
        for room, items in parsed.rooms:
            if room in hub.registry.rooms or room in hub.ordering.sequencers:
                for cache in wire.frames(room, items):
                    await hub.ordering.offer(cache)
    elif isinstance(parsed, wire.SendTo):
        member = hub.registry.get(parsed.channel_id)
        if member is not None:
            await member.send_frame(parsed.frame.frame(member.payload_type, False))
    elif isinstance(parsed, wire.Close):
        if parsed.origin != hub.process_id:
            await hub.close_local(parsed.room, parsed.code, parsed.reason)
    elif isinstance(parsed, wire.FlushGroups):
        if parsed.origin != hub.process_id:
            await hub.flush_local()
    elif isinstance(parsed, wire.Probe):
        hub.recovery.probe_seen(parsed.number, parsed.shard)
    elif isinstance(parsed, wire.Resync):
        if parsed.origin != hub.process_id:
            hub.spawn(hub.ordering.fill_all(), "catch-up")
    elif isinstance(parsed, wire.Presence):
        await hub.tracker.receive(parsed)
    elif isinstance(parsed, wire.PresenceWant):
        await hub.tracker.answer(parsed)
    elif isinstance(parsed, wire.PresenceGone):
        hub.tracker.forget(parsed.origins)
    else:
        logger.warning("Ignoring unknown layer message type %r", message.get("type"))
