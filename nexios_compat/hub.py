"""The per-process hub: local members of every group, one layer subscription per group.

A broadcast is one ``channel_layer.group_send`` to the group's layer name; every
process whose hub has a local member receives it once and writes it to its
local sockets, encoding the payload once per payload type.

Saved broadcasts reach local sockets in sequence order (``ordering.py``). The
hub also keeps itself part of the cluster: a heartbeat on its own database
thread, removal of silent peers, and recovery when the layer loses its
subscriptions (a Redis restart): subscriptions are re-added and what was saved
meanwhile is delivered from history.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import concurrent.futures
import contextlib
import contextvars
import functools
import logging
import os
import socket
import sys
import typing
import uuid
import weakref
from collections.abc import Awaitable, Callable

from channels.layers import BaseChannelLayer, get_channel_layer
from django.core.exceptions import ImproperlyConfigured
from django.db import connections

from .conf import get_config
from .db import _call, run_db
from .encoding import FrameCache, pack
from .history import (
    HistoryWriter,
    PendingMessage,
    SavedMessage,
    get_history_store,
)
from .ordering import RoomSequencer
from .presence import get_presence_store
from .rooms import check_group_name, control_group, layer_group
from .websockets.utils import ChannelAddStatusEnum, ChannelRemoveStatusEnum

if typing.TYPE_CHECKING:
    from .websockets.base import WebSocket
    from .websockets.channels import Channel
    from .websockets.utils import ChannelMessageDC

logger = logging.getLogger("nexios_compat.hub")

T = typing.TypeVar("T")

FANOUT = "nexios.fanout"
SEND_TO = "nexios.send_to"
CLOSE = "nexios.close"
FLUSH_GROUPS = "nexios.flush_groups"
# A hub's message to itself through its own probe group: proves its subscriptions still exist.
PROBE = "nexios.probe"
# "Catch up from history": sent by a hub that saved messages it could not publish.
RESYNC = "nexios.resync"

# How often a hub re-adds its layer subscriptions, which layers expire after a day.
GROUP_REFRESH_INTERVAL = 3600.0
# Longest pause between attempts to reach the layer again after it failed.
MAX_RETRY_DELAY = 1.0


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


Item = tuple[str, str | None, bytes | None, int | None]  # kind, text, data, seq


def fanout_message(room: str, items: list[Item], origin: str) -> dict[str, typing.Any]:
    """Build the one layer message that carries a room's broadcasts (one or a batch)."""
    return {"type": FANOUT, "room": room, "origin": origin, "items": [list(item) for item in items]}


async def publish(layer: BaseChannelLayer, message: PendingMessage, saved: SavedMessage | None) -> None:
    """Send one broadcast to the room's layer group (from a process without a hub)."""
    seq = saved.seq if saved is not None else None
    item: Item = (message.kind, message.text, message.data, seq)
    await layer.group_send(layer_group(message.room), fanout_message(message.room, [item], ""))


def _saved_frame(room: str, message: ChannelMessageDC) -> FrameCache:
    kind, text, data = pack(message.payload)
    return FrameCache(room, kind, text, data, message.seq)


class Hub:
    """Local channels and groups of one process (one event loop)."""

    def __init__(self) -> None:
        self.layer = get_layer()
        self.process_id = f"{socket.gethostname()[:40]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.layer_channel = ""
        self.probe_group = f"{get_config()['GROUP_PREFIX']}.probe.{uuid.uuid4().hex}"
        self.channels: dict[uuid.UUID, Channel] = {}
        self.groups: dict[str, dict[Channel, None]] = {}
        self.presence = get_presence_store()
        self.history = get_history_store()
        self.writer = HistoryWriter(self.history, self.broadcast)
        self._outbox: list[tuple[str, Item]] = []
        self._outbox_ready = asyncio.Event()
        # Layer messages received, in total and by type (for tests and diagnostics).
        self.layer_messages_received = 0
        self.received: collections.Counter[str] = collections.Counter()
        self.held_back = 0
        self.gap_fills = 0
        self.recoveries = 0
        self._sequencers: dict[str, RoomSequencer] = {}
        self._room_locks: dict[str, asyncio.Lock] = {}
        self._gap_timers: dict[str, asyncio.Task[None]] = {}
        self._subscribing: dict[str, asyncio.Future[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._start_lock = asyncio.Lock()
        self._recovery: asyncio.Task[None] | None = None
        self._recover_again = False
        self._resync_needed = False
        self._probes_sent = 0
        self._probes_seen = 0
        self._members_lost = False
        # Heartbeats run on their own database thread, so that a backlog of ORM
        # work on the shared one cannot make peers think this process is dead.
        self._beat_thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="nexios-heartbeat")
        self.started = False
        self.stopped = False
        # Sockets served by this process's consumers, with the tasks running their
        # handlers: a graceful shutdown closes them with 1001 and waits for the tasks.
        self.sockets: dict[WebSocket, asyncio.Task[None]] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        # Graceful shutdown (daphne's reactor stopping): ``stopping`` from its start,
        # ``draining`` while handlers may still finish by themselves, ``shut_down``
        # once this hub has stopped for good (no new hub is started on this loop).
        self.stopping = False
        self.draining = False
        self.shut_down = False
        self.shutdown_deadline = 0.0
        self._shutdown_trigger: tuple[typing.Any, typing.Any] | None = None

    async def broadcast(self, message: PendingMessage, saved: SavedMessage | None) -> None:
        """Deliver a broadcast to this process's members now; queue it for the other processes.

        Local members never wait for the layer: a broadcast costs the sender one
        encoding per payload type and a write per member, as in Nexios. The
        outbox task publishes what accumulated, one layer message per room per
        batch, in order; every hub ignores its own batches when they come back.
        """
        seq = saved.seq if saved is not None else None
        self._outbox.append((message.room, (message.kind, message.text, message.data, seq)))
        self._outbox_ready.set()
        await self.on_fanout(FrameCache(message.room, message.kind, message.text, message.data, seq))

    async def _send_outbox(self) -> None:
        while True:
            await self._outbox_ready.wait()
            self._outbox_ready.clear()
            await self._drain_outbox()

    async def _drain_outbox(self) -> None:
        while self._outbox:
            batch, self._outbox = self._outbox, []
            by_room: dict[str, list[Item]] = {}
            for room, item in batch:
                by_room.setdefault(room, []).append(item)
            for room, items in by_room.items():
                try:
                    await self.layer.group_send(
                        layer_group(room), fanout_message(room, items, self.process_id)
                    )
                except Exception as exc:
                    saved = [item[3] for item in items if item[3] is not None]
                    # Saved ones are in history: every hub catches up once the layer is back.
                    logger.warning(
                        "Publishing %d broadcast(s) to %r failed (%r); %d saved one(s) will be read "
                        "from history by the other processes, the rest reached only this process",
                        len(items),
                        room,
                        exc,
                        len(saved),
                    )
                    if saved:
                        self._resync_needed = True
                    self.layer_failed()

    async def _beat(self, fn: Callable[..., T], *args: typing.Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._beat_thread, functools.partial(_call, fn, *args))

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
            try:
                await self.layer.group_add(control_group(), self.layer_channel)
                await self.layer.group_add(self.probe_group, self.layer_channel)
            except Exception:
                logger.warning("Channel layer unreachable at start; retrying", exc_info=True)
                self.layer_failed()
            # daphne stops on SIGTERM without closing its applications: let the
            # peers remove this process at their next heartbeat, not after PROCESS_TIMEOUT.
            atexit.register(self._retire_at_exit)
            self._install_shutdown_trigger()
            self.writer.start()
            self._tasks = [
                asyncio.create_task(self._read(), name="nexios_compat.hub-reader"),
                asyncio.create_task(self._send_outbox(), name="nexios_compat.hub-outbox"),
                asyncio.create_task(self._keep_alive(), name="nexios_compat.hub-heartbeat"),
                asyncio.create_task(self._maintain(), name="nexios_compat.hub-maintenance"),
            ]
            self.started = True

    async def stop(self, close_code: int | None = None) -> None:
        """Flush pending history, optionally close local sockets, and leave the cluster."""
        if not self.started or self.stopped:
            return
        self.stopped = True
        if self._shutdown_trigger is not None and not self.stopping:
            reactor, trigger = self._shutdown_trigger
            with contextlib.suppress(Exception):
                reactor.removeSystemEventTrigger(trigger)
        self._shutdown_trigger = None
        await self.writer.stop()
        await self._drain_outbox()
        if close_code is not None:
            for channel in list(self.channels.values()):
                await channel.close(code=close_code, reason="Server shutting down")
        tasks = [*self._tasks, *self._gap_timers.values()]
        if self._recovery is not None:
            tasks.append(self._recovery)
        for task in tasks:
            task.cancel()
        if tasks:
            # Bounded: a task stuck in a layer call must not keep the process alive.
            await asyncio.wait(tasks, timeout=2.0)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2.0):
                for group in list(self.groups):
                    await self.layer.group_discard(layer_group(group), self.layer_channel)
                await self.layer.group_discard(control_group(), self.layer_channel)
                await self.layer.group_discard(self.probe_group, self.layer_channel)
        atexit.unregister(self._retire_at_exit)
        await run_db(self.presence.unregister_process, self.process_id)
        await self._beat(connections.close_all)
        self._beat_thread.shutdown(wait=False)

    def _retire_at_exit(self) -> None:
        try:
            self.presence.retire_process(self.process_id)
            connections.close_all()
        except Exception:  # the interpreter is exiting: the peers' timeout still applies
            logger.debug("Could not retire process %s at exit", self.process_id, exc_info=True)

    # Graceful shutdown -----------------------------------------------------

    def connection_started(self, websocket: WebSocket, task: asyncio.Task[None]) -> None:
        """A consumer started serving ``websocket`` in ``task``."""
        self.sockets[websocket] = task
        self._idle.clear()

    def connection_finished(self, websocket: WebSocket) -> None:
        """A consumer finished: handler, ``on_disconnect`` and leaving its rooms are done."""
        self.sockets.pop(websocket, None)
        if not self.sockets:
            self._idle.set()

    def _install_shutdown_trigger(self) -> None:
        """Under daphne, shut down gracefully when its reactor stops (SIGTERM, SIGINT).

        daphne runs on Twisted's asyncio reactor. Its own "before shutdown"
        trigger cancels every application (or, within a second of a handshake,
        raises ``KeyError('application_instance')`` and cancels none); this one
        then closes the sockets with 1001, lets their handlers finish and stops
        the hub. Nothing is registered on any other loop (tests, other servers).
        """
        reactor = sys.modules.get("twisted.internet.reactor")
        if (
            reactor is None
            or not getattr(reactor, "running", False)
            or getattr(reactor, "_asyncioEventloop", None) is not asyncio.get_running_loop()
        ):
            return
        trigger = reactor.addSystemEventTrigger("before", "shutdown", self._before_shutdown)
        self._shutdown_trigger = (reactor, trigger)

    def _before_shutdown(self) -> typing.Any:
        from twisted.internet.defer import Deferred

        # Set before the applications daphne has just cancelled run again: their
        # consumers see it and let the 1001 close end them instead.
        self.stopping = self.draining = True
        loop = asyncio.get_running_loop()
        self.shutdown_deadline = loop.time() + float(get_config()["SHUTDOWN_TIMEOUT"])
        # A fresh context: this callback may run in one copied from a task that was
        # inside sync_to_async, whose deadlock guard would refuse the ORM calls below.
        task = loop.create_task(
            self._bounded_shutdown(), name="nexios_compat.hub-shutdown", context=contextvars.Context()
        )
        return Deferred.fromFuture(task)

    async def _bounded_shutdown(self) -> None:
        # Whatever hangs (the layer, the database), the process must still exit;
        # the peers' heartbeats then remove what it could not.
        try:
            async with asyncio.timeout(float(get_config()["SHUTDOWN_TIMEOUT"]) + 5.0):
                await self.shutdown()
        except TimeoutError:
            logger.warning("Graceful shutdown did not finish in time; exiting anyway")

    async def shutdown(self) -> None:
        """Close every socket with 1001, wait for the handlers (``SHUTDOWN_TIMEOUT``), then stop.

        Handlers end as on any close: ``on_disconnect`` runs and what it saves is
        written; the rooms are left. Handlers still running at the deadline are
        cancelled. Then pending history is flushed and the process leaves the cluster.
        """
        loop = asyncio.get_running_loop()
        if not self.stopping:
            self.stopping = self.draining = True
            self.shutdown_deadline = loop.time() + float(get_config()["SHUTDOWN_TIMEOUT"])
        sockets = list(self.sockets)
        logger.info("Shutting down: closing %d WebSocket(s) with 1001", len(sockets))
        for websocket in sockets:
            try:
                await websocket.close(1001, "Server shutting down")
            except Exception:
                logger.debug("Closing a socket at shutdown failed", exc_info=True)
        try:
            async with asyncio.timeout_at(self.shutdown_deadline):
                await self._idle.wait()
        except TimeoutError:
            self.draining = False
            late = [task for task in self.sockets.values() if not task.done()]
            logger.warning(
                "Cancelling %d WebSocket handler(s) still running at the shutdown deadline", len(late)
            )
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=1.0)
        self.draining = False
        self.shut_down = True
        await self.stop()

    # Membership ----------------------------------------------------------

    def register(self, channel: Channel) -> None:
        """Track a channel created in this process (for expiry and ``send_to``)."""
        self.channels[channel.id] = channel

    async def join(self, channel: Channel, group: str, since: int | None = None) -> ChannelAddStatusEnum:
        """Add a channel to a group; with ``since``, first replay saved messages after it."""
        check_group_name(group)
        self.register(channel)
        while True:
            members = self.groups.get(group)
            if members is not None and channel in members:
                return ChannelAddStatusEnum.CHANNEL_EXIST
            if members is None:
                members = self.groups[group] = {}
                await self._subscribe(group)
                break
            if group not in self._subscribing:
                break
            await asyncio.shield(self._subscribing[group])  # then look again: it may have failed
        if since is not None:
            channel._buffer = []
        members[channel] = None
        channel.groups.add(group)
        try:
            await run_db(self.presence.add, group, channel.id, self.process_id, channel.metadata)
            if since is not None:
                await self._replay(channel, group, since)
        finally:
            channel._buffer = None
        return ChannelAddStatusEnum.CHANNEL_ADDED

    async def _subscribe(self, group: str) -> None:
        """Start receiving a group's broadcasts (its first local member is joining)."""
        ready = self._subscribing[group] = asyncio.get_running_loop().create_future()
        try:
            # Read the room's last number *before* subscribing: whatever is saved
            # later reaches this process, live or, if it was published before the
            # subscription took effect, from history when the next one shows the gap.
            last = await run_db(self.history.last_seq, group)
            self._sequencers[group] = RoomSequencer(last + 1)
            try:
                await self.layer.group_add(layer_group(group), self.layer_channel)
            except Exception:
                logger.warning("Subscribing to %r failed; retrying in the background", group, exc_info=True)
                self.layer_failed()
        except BaseException:
            if not self.groups.get(group):
                self.groups.pop(group, None)
                self._forget_room(group)
            raise
        finally:
            ready.set_result(None)
            del self._subscribing[group]

    async def leave(self, channel: Channel, group: str) -> ChannelRemoveStatusEnum:
        """Remove a channel from a group; drop the layer subscription with the last member."""
        members = self.groups.get(group)
        if members is None:
            return ChannelRemoveStatusEnum.GROUP_DOES_NOT_EXIST
        if channel not in members:
            return ChannelRemoveStatusEnum.CHANNEL_DOES_NOT_EXIST
        del members[channel]
        channel.groups.discard(group)
        channel._replayed.pop(group, None)
        status = ChannelRemoveStatusEnum.CHANNEL_REMOVED
        if not members and group not in self._subscribing:
            del self.groups[group]
            self._forget_room(group)
            status = ChannelRemoveStatusEnum.GROUP_REMOVED
            try:
                await self.layer.group_discard(layer_group(group), self.layer_channel)
            except Exception:  # a stale subscription only brings broadcasts nobody here wants
                logger.warning("Unsubscribing from %r failed", group, exc_info=True)
        await run_db(self.presence.remove, group, channel.id)
        return status

    def _forget_room(self, group: str) -> None:
        self._sequencers.pop(group, None)
        self._room_locks.pop(group, None)
        timer = self._gap_timers.pop(group, None)
        if timer is not None:
            timer.cancel()

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
            frame = _saved_frame(group, message).frame(channel.payload_type, channel.envelope)
            await channel.websocket.drain()  # a long replay waits for the client to read
            await channel.websocket.send_frame(frame)
            last = max(last, message.seq or last)
        while channel._buffer:
            pending, channel._buffer = channel._buffer, []
            for cache in pending:
                if cache.room == group and cache.seq is not None:
                    if cache.seq <= last:
                        continue
                    last = cache.seq
                await channel.websocket.drain()
                await channel.websocket.send_frame(cache.frame(channel.payload_type, channel.envelope))
        sequencer = self._sequencers.get(group)
        if sequencer is not None and last >= sequencer.next_seq:
            # The replay read messages the room's live stream has not brought yet:
            # when they come, this channel has them already.
            channel._replayed[group] = last

    async def deliver(self, cache: FrameCache) -> None:
        """Write one broadcast to every local member of its group."""
        members = self.groups.get(cache.room)
        if not members:
            return
        for channel in list(members):
            if channel._buffer is not None:
                channel._buffer.append(cache)
                continue
            if channel._replayed and cache.seq is not None and cache.room in channel._replayed:
                if cache.seq <= channel._replayed[cache.room]:
                    continue
                del channel._replayed[cache.room]  # saved ones come in order: no more repeats
            try:
                await channel.websocket.send_frame(cache.frame(channel.payload_type, channel.envelope))
            except Exception:  # one broken socket must not stop the others
                logger.debug("Delivery to channel %s failed", channel.id, exc_info=True)

    async def on_fanout(self, cache: FrameCache) -> None:
        """Deliver a broadcast; saved ones in sequence order, holding back those ahead of a gap."""
        sequencer = self._sequencers.get(cache.room)
        if cache.seq is None or sequencer is None:
            await self.deliver(cache)  # unsaved: as it comes; no local member: nothing to do
            return
        async with self._room_lock(cache.room):
            if self._sequencers.get(cache.room) is not sequencer:
                return
            ready = sequencer.offer(cache)
            if cache.seq in sequencer.held:
                self.held_back += 1
            for frame in ready:
                await self.deliver(frame)
            if ready or not sequencer.waiting:
                self._cancel_gap_timer(cache.room)
            if sequencer.waiting and cache.room not in self._gap_timers:
                self._gap_timers[cache.room] = asyncio.create_task(
                    self._fill_gap_later(cache.room), name="nexios_compat.hub-gap"
                )

    def _room_lock(self, room: str) -> asyncio.Lock:
        lock = self._room_locks.get(room)
        if lock is None:
            lock = self._room_locks[room] = asyncio.Lock()
        return lock

    def _cancel_gap_timer(self, room: str) -> None:
        timer = self._gap_timers.pop(room, None)
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()

    async def _fill_gap_later(self, room: str) -> None:
        await asyncio.sleep(float(get_config()["REORDER_TIMEOUT"]))
        if self._gap_timers.get(room) is asyncio.current_task():
            del self._gap_timers[room]
        await self.fill_from_history(room)

    async def fill_from_history(self, room: str) -> None:
        """Deliver a room's saved messages that never arrived live, in order."""
        sequencer = self._sequencers.get(room)
        if sequencer is None:
            return
        try:
            saved = await run_db(self.history.fetch, room, sequencer.next_seq - 1)
        except Exception:
            # Better late and with a gap than never: deliver what was held back.
            logger.exception("Reading %r's history to fill a gap failed", room)
            saved = []
        async with self._room_lock(room):
            if self._sequencers.get(room) is not sequencer:
                return
            ready = sequencer.fill(_saved_frame(room, message) for message in saved)
            if ready:
                self.gap_fills += 1
            for frame in ready:
                await self.deliver(frame)

    async def catch_up(self) -> None:
        """Fill every local room from history (after the layer lost messages)."""
        for room in list(self._sequencers):
            await self.fill_from_history(room)

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
                if failures == 1:
                    logger.warning("Channel layer receive failed; retrying", exc_info=True)
                # Whatever broke may have taken our subscriptions with it (a
                # restarted Redis has none): have them re-added once it answers.
                self.layer_failed()
                await asyncio.sleep(min(0.05 * 2**failures, MAX_RETRY_DELAY))
                continue
            failures = 0
            self.layer_messages_received += 1
            self.received[str(message.get("type"))] += 1
            try:
                await self._handle(message)
            except Exception:
                logger.exception("Handling layer message %r failed", message.get("type"))

    async def _handle(self, message: dict[str, typing.Any]) -> None:
        kind = message.get("type")
        if kind == FANOUT:
            if message.get("origin") == self.process_id:
                return  # delivered locally when it was sent
            room = message["room"]
            for item_kind, text, data, seq in message["items"]:
                await self.on_fanout(FrameCache(room, item_kind, text, data, seq))
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
        elif kind == PROBE:
            self._probes_seen = max(self._probes_seen, int(message.get("n", 0)))
        elif kind == RESYNC:
            if message.get("origin") != self.process_id:
                self._spawn(self.catch_up(), "catch-up")
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

    # Layer recovery --------------------------------------------------------

    def layer_failed(self) -> None:
        """Note that the layer failed; re-add subscriptions and catch up once it answers."""
        if self.stopped:
            return
        if self._recovery is not None and not self._recovery.done():
            self._recover_again = True
            return
        self._recovery = asyncio.create_task(self._recover(), name="nexios_compat.hub-recovery")

    async def _recover(self) -> None:
        delay = 0.1
        while True:
            self._recover_again = False
            try:
                await self._resubscribe()
                if self._resync_needed:
                    # Cleared first: a publish failing while this is sent sets it again.
                    self._resync_needed = False
                    try:
                        await self.layer.group_send(
                            control_group(), {"type": RESYNC, "origin": self.process_id}
                        )
                    except BaseException:
                        self._resync_needed = True
                        raise
            except Exception:
                logger.debug("Channel layer still unreachable", exc_info=True)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_DELAY)
                continue
            self.recoveries += 1
            logger.warning("Channel layer subscriptions re-added (%d rooms)", len(self.groups))
            await self.catch_up()
            if not self._recover_again:
                return

    async def _resubscribe(self) -> None:
        """Re-add layer subscriptions (after a layer outage or before they expire)."""
        await self.layer.group_add(control_group(), self.layer_channel)
        await self.layer.group_add(self.probe_group, self.layer_channel)
        for group in list(self.groups):
            await self.layer.group_add(layer_group(group), self.layer_channel)

    async def probe(self) -> None:
        """Send this hub a message through its probe group; recover if earlier ones never came."""
        # The previous probe had a whole interval to come back: if it did not,
        # the layer lost our subscriptions (a restarted Redis has none), or the
        # reader is that far behind, when re-adding them and catching up is harmless.
        if self._probes_seen < self._probes_sent:
            logger.warning("Layer probes are not coming back; re-adding subscriptions")
            self._probes_seen = self._probes_sent
            self.layer_failed()
        self._probes_sent += 1
        try:
            await self.layer.group_send(self.probe_group, {"type": PROBE, "n": self._probes_sent})
        except Exception:
            self.layer_failed()

    # Maintenance -----------------------------------------------------------

    async def sweep(self) -> int:
        """Close channels idle for longer than their ``expires``; return how many."""
        expired = [channel for channel in list(self.channels.values()) if channel.is_expired()]
        for channel in expired:
            logger.debug("Channel %s expired after %s s idle", channel.id, channel.expires)
            await channel.close(code=1001, reason="Channel expired")
        return len(expired)

    async def heartbeat(self) -> None:
        """Mark this process alive and remove the members of silent ones."""
        beat = await self._beat(self.presence.heartbeat, self.process_id)
        for layer_channel, rooms in beat.removed:
            logger.warning(
                "Removed the members of a silent process (%s) from %d rooms", layer_channel, len(rooms)
            )
            try:
                for room in rooms:
                    await self.layer.group_discard(layer_group(room), layer_channel)
                await self.layer.group_discard(control_group(), layer_channel)
            except Exception:  # its subscriptions expire with the layer's group expiry
                logger.warning("Unsubscribing a silent process failed", exc_info=True)
        if not beat.registered:
            # Peers took this process for dead and deleted it with its members
            # and subscriptions: register again and put all of them back.
            logger.warning("Peers removed this process after PROCESS_TIMEOUT of silence; rejoining")
            await self._beat(self.presence.register_process, self.process_id, self.layer_channel, os.getpid())
            self._members_lost = True
            self.layer_failed()
        if self._members_lost:  # until it succeeds, at every heartbeat
            members = [
                (group, channel.id, channel.metadata)
                for group, channels in self.groups.items()
                for channel in channels
            ]
            await self._beat(self.presence.add_many, self.process_id, members)
            self._members_lost = False

    async def _keep_alive(self) -> None:
        """Heartbeat and probe at a fixed rate, apart from the slower maintenance jobs."""
        loop = asyncio.get_running_loop()
        interval = float(get_config()["HEARTBEAT_INTERVAL"])
        due = loop.time() + interval
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            due = max(due + interval, loop.time())
            for name, job in (("heartbeat", self.heartbeat), ("probe", self.probe)):
                try:
                    await job()
                except Exception:
                    logger.exception("Hub %s failed", name)

    async def _maintain(self) -> None:
        config = get_config()
        loop = asyncio.get_running_loop()
        prune_interval = config["HISTORY_PRUNE_INTERVAL"]
        jobs: list[tuple[str, float, Callable[[], Awaitable[typing.Any]]]] = [
            ("sweep", float(config["EXPIRE_SWEEP_INTERVAL"]), self.sweep),
            ("refresh", GROUP_REFRESH_INTERVAL, self._resubscribe),
        ]
        if prune_interval:
            jobs.append(("prune", float(prune_interval), lambda: run_db(self.history.prune)))
        due = {name: loop.time() + interval for name, interval, _ in jobs}
        while True:
            await asyncio.sleep(max(0.0, min(due.values()) - loop.time()))
            for name, interval, job in jobs:
                if due[name] > loop.time():
                    continue
                due[name] = loop.time() + interval
                try:
                    await job()
                except Exception:
                    logger.exception("Hub %s failed", name)

    def _spawn(self, coro: typing.Coroutine[typing.Any, typing.Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=f"nexios_compat.hub-{name}")
        self._tasks.append(task)
        task.add_done_callback(self._tasks.remove)

    def stats(self) -> dict[str, typing.Any]:
        """Return counters and state for tests and diagnostics."""
        return {
            "process_id": self.process_id,
            "layer_channel": self.layer_channel,
            "layer_messages_received": self.layer_messages_received,
            "received": dict(self.received),
            "held_back": self.held_back,
            "gap_fills": self.gap_fills,
            "recoveries": self.recoveries,
            "groups": {group: len(members) for group, members in self.groups.items()},
            "channels": len(self.channels),
        }


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
    if hub is not None and hub.shut_down:
        raise RuntimeError("nexios_compat: the server is shutting down")
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
