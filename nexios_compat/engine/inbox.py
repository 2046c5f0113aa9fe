"""The hub's inbox: this process's layer messages, each handed to the part it concerns."""

from __future__ import annotations

import asyncio
import logging
import typing

from . import wire

if typing.TYPE_CHECKING:
    from .hub import Hub

logger = logging.getLogger("nexios_compat.hub")


async def read(hub: Hub) -> None:
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


async def handle(hub: Hub, message: wire.LayerMessage) -> None:
    """Act on one layer message."""
    parsed = wire.parse(message)
    if isinstance(parsed, wire.Fanout):
        if parsed.origin != hub.process_id:  # our own were delivered when sent
            for cache in parsed.frames:
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
        hub.recovery.probe_seen(parsed.number)
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
