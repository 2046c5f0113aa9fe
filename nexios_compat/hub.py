"""The per-process hub: local members of every group, one layer subscription per group.

A broadcast is one ``channel_layer.group_send`` to the group's layer name; every
process whose hub has a local member receives it once and writes it to its
local sockets, encoding the payload once per payload type.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import typing
import uuid
import weakref

from channels.layers import BaseChannelLayer, get_channel_layer
from django.core.exceptions import ImproperlyConfigured

from .conf import get_config
from .db import run_db
from .encoding import FrameCache, pack
from .history import HistoryWriter, PendingMessage, SavedMessage, get_history_store
from .presence import get_presence_store
from .rooms import check_group_name, control_group, layer_group
from .websockets.utils import ChannelAddStatusEnum, ChannelRemoveStatusEnum

if typing.TYPE_CHECKING:
    from .websockets.base import WebSocket
    from .websockets.channels import Channel

logger = logging.getLogger("nexios_compat.hub")

FANOUT = "nexios.fanout"
SEND_TO = "nexios.send_to"
CLOSE = "nexios.close"
FLUSH_GROUPS = "nexios.flush_groups"

# How often a hub re-adds its layer subscriptions, which layers expire after a day.
GROUP_REFRESH_INTERVAL = 3600.0


def get_layer() -> BaseChannelLayer:
    """Return the configured channel layer or explain how to configure one."""
    alias = get_config()["LAYER_ALIAS"]
    layer = get_channel_layer(alias)
    if layer is None:
        raise ImproperlyConfigured(
            f"nexios_compat needs a channel layer: add {alias!r} to CHANNEL_LAYERS "
            "(channels.layers.InMemoryChannelLayer for one process, channels_redis for several)."
        )
    return typing.cast(BaseChannelLayer, layer)


def fanout_message(
    room: str, kind: str, text: str | None, data: bytes | None, seq: int | None
) -> dict[str, typing.Any]:
    """Build the one layer message that carries a broadcast."""
    return {"type": FANOUT, "room": room, "k": kind, "t": text, "b": data, "s": seq}


async def publish(layer: BaseChannelLayer, message: PendingMessage, saved: SavedMessage | None) -> None:
    """Send one broadcast to the room's layer group."""
    seq = saved.seq if saved is not None else None
    await layer.group_send(
        layer_group(message.room),
        fanout_message(message.room, message.kind, message.text, message.data, seq),
    )


class Hub:
    """Local channels and groups of one process (one event loop)."""

    def __init__(self) -> None:
        self.layer = get_layer()
        self.process_id = f"{socket.gethostname()[:40]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.layer_channel = ""
        self.channels: dict[uuid.UUID, Channel] = {}
        self.groups: dict[str, dict[Channel, None]] = {}
        self.presence = get_presence_store()
        self.history = get_history_store()
        self.writer = HistoryWriter(self.history, self._publish)
        self.layer_messages_received = 0
        self._subscribing: dict[str, asyncio.Future[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._start_lock = asyncio.Lock()
        self.started = False
        self.stopped = False

    async def _publish(self, message: PendingMessage, saved: SavedMessage | None) -> None:
        await publish(self.layer, message, saved)

    # Lifecycle -----------------------------------------------------------

    async def ensure_started(self) -> None:
        """Start the hub once: layer channel, process row, background tasks."""
        if self.started:
            return
        async with self._start_lock:
            if self.started:
                return
            self.layer_channel = await self.layer.new_channel("nexios_compat.hub.")
            await run_db(self.presence.register_process, self.process_id, self.layer_channel, os.getpid())
            await self.layer.group_add(control_group(), self.layer_channel)
            self.writer.start()
            self._tasks = [
                asyncio.create_task(self._read(), name="nexios_compat.hub-reader"),
                asyncio.create_task(self._maintain(), name="nexios_compat.hub-maintenance"),
            ]
            self.started = True

    async def stop(self, close_code: int | None = None) -> None:
        """Flush pending history, optionally close local sockets, and leave the cluster."""
        if not self.started or self.stopped:
            return
        self.stopped = True
        await self.writer.stop()
        if close_code is not None:
            for channel in list(self.channels.values()):
                await channel.close(code=close_code, reason="Server shutting down")
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for group in list(self.groups):
            await self.layer.group_discard(layer_group(group), self.layer_channel)
        await self.layer.group_discard(control_group(), self.layer_channel)
        await run_db(self.presence.unregister_process, self.process_id)

    # Membership ----------------------------------------------------------

    def register(self, channel: Channel) -> None:
        """Track a channel created in this process (for expiry and ``send_to``)."""
        self.channels[channel.id] = channel

    async def join(self, channel: Channel, group: str, since: int | None = None) -> ChannelAddStatusEnum:
        """Add a channel to a group; with ``since``, first replay saved messages after it."""
        check_group_name(group)
        self.register(channel)
        members = self.groups.get(group)
        if members is not None and channel in members:
            return ChannelAddStatusEnum.CHANNEL_EXIST
        if since is not None:
            channel._buffer = []
        if members is None:
            members = self.groups[group] = {}
            ready = self._subscribing[group] = asyncio.get_running_loop().create_future()
            try:
                await self.layer.group_add(layer_group(group), self.layer_channel)
            finally:
                ready.set_result(None)
                del self._subscribing[group]
        elif group in self._subscribing:
            await asyncio.shield(self._subscribing[group])
        members[channel] = None
        channel.groups.add(group)
        try:
            await run_db(self.presence.add, group, channel.id, self.process_id, channel.metadata)
            if since is not None:
                await self._replay(channel, group, since)
        finally:
            channel._buffer = None
        return ChannelAddStatusEnum.CHANNEL_ADDED

    async def leave(self, channel: Channel, group: str) -> ChannelRemoveStatusEnum:
        """Remove a channel from a group; drop the layer subscription with the last member."""
        members = self.groups.get(group)
        if members is None:
            return ChannelRemoveStatusEnum.GROUP_DOES_NOT_EXIST
        if channel not in members:
            return ChannelRemoveStatusEnum.CHANNEL_DOES_NOT_EXIST
        del members[channel]
        channel.groups.discard(group)
        status = ChannelRemoveStatusEnum.CHANNEL_REMOVED
        if not members:
            del self.groups[group]
            await self.layer.group_discard(layer_group(group), self.layer_channel)
            status = ChannelRemoveStatusEnum.GROUP_REMOVED
        await run_db(self.presence.remove, group, channel.id)
        return status

    async def release(self, websocket: WebSocket) -> None:
        """Forget every channel of a finished connection."""
        for channel in list(websocket.channels):
            await self.discard(channel)

    async def discard(self, channel: Channel) -> None:
        """Take a channel out of all its groups and stop tracking it."""
        for group in list(channel.groups):
            await self.leave(channel, group)
        self.channels.pop(channel.id, None)

    # Delivery --------------------------------------------------------------

    async def _replay(self, channel: Channel, group: str, since: int) -> None:
        """Send saved messages after ``since``, then what arrived meanwhile, without duplicates."""
        last = since
        for message in await run_db(self.history.fetch, group, since):
            kind, text, data = pack(message.payload)
            frame = FrameCache(group, kind, text, data, message.seq).frame(
                channel.payload_type, channel.envelope
            )
            await channel.websocket.send_frame(frame)
            last = max(last, message.seq or last)
        while channel._buffer:
            pending, channel._buffer = channel._buffer, []
            for cache in pending:
                if cache.room == group and cache.seq is not None:
                    if cache.seq <= last:
                        continue
                    last = cache.seq
                await channel.websocket.send_frame(cache.frame(channel.payload_type, channel.envelope))

    async def deliver(self, cache: FrameCache) -> None:
        """Write one broadcast to every local member of its group."""
        members = self.groups.get(cache.room)
        if not members:
            return
        for channel in list(members):
            if channel._buffer is not None:
                channel._buffer.append(cache)
                continue
            try:
                await channel.websocket.send_frame(cache.frame(channel.payload_type, channel.envelope))
            except Exception:  # one broken socket must not stop the others
                logger.debug("Delivery to channel %s failed", channel.id, exc_info=True)

    async def _read(self) -> None:
        """Receive layer messages for this process and act on them."""
        failures = 0
        while True:
            try:
                message = await self.layer.receive(self.layer_channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                logger.warning(
                    "Channel layer receive failed (%d in a row); retrying", failures, exc_info=True
                )
                await asyncio.sleep(min(0.1 * 2**failures, 5.0))
                continue
            if failures:
                failures = 0
                await self._resubscribe()
            self.layer_messages_received += 1
            try:
                await self._handle(message)
            except Exception:
                logger.exception("Handling layer message %r failed", message.get("type"))

    async def _handle(self, message: dict[str, typing.Any]) -> None:
        kind = message.get("type")
        if kind == FANOUT:
            await self.deliver(
                FrameCache(message["room"], message["k"], message["t"], message["b"], message["s"])
            )
        elif kind == SEND_TO:
            channel = self.channels.get(uuid.UUID(message["channel"]))
            if channel is not None:
                frame = FrameCache("", message["k"], message["t"], message["b"], None)
                await channel.websocket.send_frame(frame.frame(channel.payload_type, False))
        elif kind == CLOSE:
            if message.get("origin") != self.process_id:
                await self.close_local(
                    message.get("room"), message.get("code", 1000), message.get("reason", "")
                )
        elif kind == FLUSH_GROUPS:
            if message.get("origin") != self.process_id:
                await self.flush_local()
        else:
            logger.warning("Ignoring unknown layer message type %r", kind)

    async def close_local(self, room: str | None, code: int = 1000, reason: str = "") -> int:
        """Close local channels (of one room, or all); return how many."""
        targets = list(self.channels.values()) if room is None else list(self.groups.get(room, {}))
        for channel in targets:
            await channel.close(code=code, reason=reason)
        return len(targets)

    async def flush_local(self) -> None:
        """Take every local channel out of every group, keeping sockets open."""
        for channel in list(self.channels.values()):
            for group in list(channel.groups):
                await self.leave(channel, group)

    # Maintenance -----------------------------------------------------------

    async def sweep(self) -> int:
        """Close channels idle for longer than their ``expires``; return how many."""
        expired = [channel for channel in list(self.channels.values()) if channel.is_expired()]
        for channel in expired:
            logger.debug("Channel %s expired after %s s idle", channel.id, channel.expires)
            await channel.close(code=1001, reason="Channel expired")
        return len(expired)

    async def _resubscribe(self) -> None:
        """Re-add layer subscriptions (after a layer outage or before they expire)."""
        await self.layer.group_add(control_group(), self.layer_channel)
        for group in list(self.groups):
            await self.layer.group_add(layer_group(group), self.layer_channel)

    async def heartbeat(self) -> None:
        """Mark this process alive and remove the members of silent ones."""
        for layer_channel, rooms in await run_db(self.presence.heartbeat, self.process_id):
            logger.warning("Removed members of a silent process (%s)", layer_channel)
            for room in rooms:
                await self.layer.group_discard(layer_group(room), layer_channel)

    async def _maintain(self) -> None:
        config = get_config()
        tick = min(float(config["EXPIRE_SWEEP_INTERVAL"]), float(config["HEARTBEAT_INTERVAL"]))
        prune_interval = config["HISTORY_PRUNE_INTERVAL"]
        now = time.monotonic()
        next_heartbeat = now + float(config["HEARTBEAT_INTERVAL"])
        next_prune = now + float(prune_interval) if prune_interval else None
        next_refresh = now + GROUP_REFRESH_INTERVAL
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            jobs: list[tuple[str, typing.Callable[[], typing.Awaitable[typing.Any]]]] = [
                ("sweep", self.sweep)
            ]
            if now >= next_heartbeat:
                next_heartbeat = now + float(config["HEARTBEAT_INTERVAL"])
                jobs.append(("heartbeat", self.heartbeat))
            if next_prune is not None and now >= next_prune:
                next_prune = now + float(prune_interval)
                jobs.append(("prune", lambda: run_db(self.history.prune)))
            if now >= next_refresh:
                next_refresh = now + GROUP_REFRESH_INTERVAL
                jobs.append(("refresh", self._resubscribe))
            for name, job in jobs:
                try:
                    await job()
                except Exception:
                    logger.exception("Hub %s failed", name)


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()


def current_hub() -> Hub | None:
    """Return this event loop's hub if it has been created, else ``None``."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    return _hubs.get(loop)


async def get_hub() -> Hub:
    """Return this event loop's hub, creating and starting it on first use."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None or hub.stopped:
        hub = _hubs[loop] = Hub()
    await hub.ensure_started()
    return hub


async def stop_hub(close_code: int | None = None) -> None:
    """Stop this event loop's hub (tests and graceful shutdown)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.pop(loop, None)
    if hub is not None:
        await hub.stop(close_code)
