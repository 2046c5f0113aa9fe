"""The per-process hub: composes the engine's parts for one event loop.

Local-first fan-out: a broadcast is written to this process's members at once
(encoded once per payload type) and queued in the outbox, which publishes what
accumulated per room as one layer message; every other hub subscribed to the
room receives it once and writes it to its own members. Saved broadcasts are
stored by the writer before anyone receives them, and reach local members in
sequence order. The parts: ``LocalRegistry`` (who is here), ``SenderReplies`` (acks
and failures, to the sender), ``RoomMembership``
(joining and leaving), ``HistoryWriter`` (saves), ``RoomOrdering`` (seq order,
gap fills), ``Outbox`` (fan-out to the other processes), ``LayerRecovery``
(subscriptions), ``PresenceTracker`` (live presence), ``MembershipReconciler``
(membership rows), ``ClusterMembership`` (this process's row and heartbeats),
``GracefulShutdown`` and ``Scheduler``; ``wire`` builds and parses every layer
message, and ``inbox`` hands each received one to its part.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import logging
import os
import socket
import typing
import uuid

from ..conf import get_config
from ..encoding import FrameCache
from ..rooms import control_group, layer_group
from ..stores.history import PendingMessage, SavedMessage
from ..stores.membership import Heartbeat, get_membership_store
from ..stores.services import HistoryService, MembershipService
from ..types import ChannelAddStatusEnum, ChannelRemoveStatusEnum
from . import delivery, diagnostics, inbox, wire
from .cluster import ClusterMembership
from .layer import get_layer, new_channel, probe_groups, refresh_interval
from .membership import RoomMembership
from .ordering import RoomOrdering
from .outbox import Outbox
from .presence.tracker import PresenceTracker
from .protocols import LocalMember
from .reconcile import MembershipReconciler
from .recovery import LayerRecovery
from .registry import LocalRegistry
from .replies import SenderReplies
from .scheduler import Scheduler
from .shutdown import GracefulShutdown, retry_after_of
from .writer import HistoryWriter

logger = logging.getLogger("nexios_compat.hub")

# How often a hub re-adds its layer subscriptions, which layers expire after a day
# (or sooner: the interval shrinks to half a shorter ``group_expiry``).
GROUP_REFRESH_INTERVAL = 3600.0


class Hub:
    """Local members and rooms of one process (one event loop), and its part in the cluster."""

    def __init__(self) -> None:
        config = get_config()
        self.layer = get_layer()
        self.process_id = f"{socket.gethostname()[:40]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.registry = LocalRegistry()
        # Processes registered at the last heartbeat (the outbox's choice of message).
        self._processes = 1
        self.history = HistoryService()
        store = get_membership_store()
        self.rows = MembershipService(store)
        self.writer = HistoryWriter(
            HistoryService.for_writer(_seconds(config["HISTORY_STATEMENT_TIMEOUT"])),
            self.broadcast,
            batch_size=int(config["HISTORY_BATCH_SIZE"]),
            max_pending=int(config["HISTORY_MAX_PENDING"]),
            max_pending_bytes=int(config["HISTORY_MAX_PENDING_BYTES"]),
            write_timeout=_seconds(config["HISTORY_WRITE_TIMEOUT"]),
            lock_timeout=float(config["HISTORY_LOCK_TIMEOUT"]),
            reject=lambda message: self.replies.unavailable(message),
            check=self.history.store.refuse,
            alive=lambda sender: self.registry.get(sender) is not None,
        )
        self.ordering = RoomOrdering(
            lambda cache: delivery.deliver(self.registry, cache),
            self._read_since,
            float(config["REORDER_TIMEOUT"]),
            read_head=self.history.head,
        )
        self.replies = SenderReplies(self.registry, self.ordering, self.spawn)
        probe_group = f"{config['GROUP_PREFIX']}.probe.{uuid.uuid4().hex}"
        self.recovery = LayerRecovery(
            self.layer, self.process_id, probe_group, self.registry.rooms.keys, self._catch_up
        )
        self.tracker = PresenceTracker(
            self.layer,
            self.process_id,
            lambda: self.recovery.channel,
            self.rows,
            float(config["PRESENCE_INTERVAL"]),
            int(config["PRESENCE_MAX_LIST"]),
        )
        self.membership = RoomMembership(
            self.layer, self.registry, self.ordering, self.recovery, self.history
        )
        self.reconciler = MembershipReconciler(
            self.rows, self.process_id, self.membership.memberships, float(config["RECONCILE_INTERVAL"])
        )
        self.membership.reconciler = self.reconciler
        self.membership.tracker = self.tracker
        self.outbox = Outbox(
            self._publish_batch,
            self.recovery.publish_failed,
            config["OUTBOX_MAX_PENDING"],
            config["OUTBOX_MAX_PENDING_BYTES"],
            publish_rooms=self._publish_rooms,
            processes=lambda: self._processes,
            hears=self.has_members,
        )
        self.cluster = ClusterMembership(
            self.process_id,
            store,
            self.layer,
            self.membership.memberships,
            self.recovery.failed,
            interval=float(config["HEARTBEAT_INTERVAL"]),
            on_beat=self._beat,
        )
        self.shutdown = GracefulShutdown(
            float(config["SHUTDOWN_TIMEOUT"]), self.stop, retry_after_of(config["SHUTDOWN_RETRY_AFTER"])
        )
        self.scheduler = Scheduler()
        # Layer messages received, in total and by type (for tests and diagnostics).
        self.received: collections.Counter[str] = collections.Counter()
        self._tasks: list[asyncio.Task[None]] = []
        self._start_lock = asyncio.Lock()
        self.started = False
        self.stopped = False

    # Names the API and diagnostics read ----------------------------------------

    @property
    def layer_channel(self) -> str:
        """The layer channel this hub receives on."""
        return self.recovery.channel

    @property
    def probe_group(self) -> str:
        """The layer group this hub probes its own subscriptions through."""
        return self.recovery.probe_group

    @property
    def stopping(self) -> bool:
        """Whether a graceful shutdown has begun."""
        return self.shutdown.stopping

    # Lifecycle -----------------------------------------------------------------

    async def ensure_started(self) -> None:
        """Start the hub once: layer channel, process row, background tasks."""
        if self.started:
            return
        # The hub's tasks outlive the connection that happened to start it, so they must
        # not inherit its context: the socket being served (which a room's rules read to
        # tell a client's sends from the server's) would stay referenced and be taken
        # for the sender of everything the hub does later.
        await asyncio.create_task(
            self._start(), name="nexios_compat.hub-start", context=contextvars.Context()
        )

    async def _start(self) -> None:
        async with self._start_lock:
            if self.started:
                return
            # The layer's default prefix: channels_redis serves every process-local
            # channel from one receive loop, which reads only the default prefix's
            # queue; any other prefix starves the site's own consumers.
            self.recovery.channel = await new_channel(self.layer)
            self.recovery.probe_groups = probe_groups(self.layer, self.probe_group)
            await self.cluster.join(self.recovery.channel)
            try:
                await self.layer.group_add(control_group(), self.recovery.channel)
                for group in self.recovery.probe_groups:
                    await self.layer.group_add(group, self.recovery.channel)
            except Exception:
                logger.warning("Channel layer unreachable at start; retrying", exc_info=True)
                self.recovery.failed()
            self.shutdown.install()
            self.writer.start()
            self._schedule()
            self._tasks = [
                asyncio.create_task(self._read(), name="nexios_compat.hub-reader"),
                asyncio.create_task(self.outbox.run(), name="nexios_compat.hub-outbox"),
            ]
            self.started = True

    def _schedule(self) -> None:
        config = get_config()
        self.scheduler.every("heartbeat", float(config["HEARTBEAT_INTERVAL"]), self.cluster.heartbeat)
        self.scheduler.every("probe", float(config["HEARTBEAT_INTERVAL"]), self.recovery.probe)
        self.scheduler.every("sweep", float(config["EXPIRE_SWEEP_INTERVAL"]), self.sweep)
        self.scheduler.every("reconcile", float(config["HEARTBEAT_INTERVAL"]), self.reconcile)
        refresh = refresh_interval(self.layer, GROUP_REFRESH_INTERVAL)
        self.scheduler.every("refresh", refresh, self.recovery.resubscribe)
        if config["HISTORY_PRUNE_INTERVAL"]:
            self.scheduler.every("prune", float(config["HISTORY_PRUNE_INTERVAL"]), self.history.prune)
        self.scheduler.start()

    async def stop(self, close_code: int | None = None) -> None:
        """Flush pending history, optionally close local sockets, and leave the cluster."""
        if not self.started or self.stopped:
            return
        self.stopped = True
        self.shutdown.uninstall()
        await self.writer.stop()
        await self.outbox.drain()
        if close_code is not None:
            for member in list(self.registry.members.values()):
                await member.close(code=close_code, reason="Server shutting down")
        tasks = [*self._tasks, *self.scheduler.tasks(), *self.ordering.timers()]
        for task in tasks:
            task.cancel()
        if tasks:
            # Bounded: a task stuck in a layer call must not keep the process alive.
            await asyncio.wait(tasks, timeout=2.0)
        await self.tracker.stop()
        await self.recovery.stop()
        await self.cluster.leave()
        await self.writer.history.close()

    # Membership ----------------------------------------------------------------

    def register(self, member: LocalMember) -> None:
        """Track a member created in this process (for expiry and ``send_to``)."""
        self.registry.register(member)

    def is_member(self, member: LocalMember, room: str) -> bool:
        """Whether a local member is in a room."""
        return self.membership.is_member(member, room)

    def has_members(self, room: str) -> bool:
        """Whether a room has members in this process."""
        return self.membership.has_members(room)

    async def join(
        self, member: LocalMember, room: str, since: int | None = None, epoch: str | None = None
    ) -> ChannelAddStatusEnum:
        """Add a member to a room; with ``since`` (and ``epoch``), first replay what it missed."""
        return await self.membership.join(member, room, since, epoch)

    async def leave(self, member: LocalMember, room: str) -> ChannelRemoveStatusEnum:
        """Remove a member from a room."""
        return await self.membership.leave(member, room)

    async def discard(self, member: LocalMember) -> None:
        """Take a member out of all its rooms and stop tracking it."""
        self.writer.forget(member.id)
        await self.membership.discard(member)

    def drop(self, member: LocalMember) -> None:
        """Take a member out of all its rooms at once (its handler is being cancelled)."""
        rooms = list(member.groups)
        self.writer.forget(member.id)
        for room in self.membership.drop(member):
            # In the background: the cancelled handler cannot wait for the layer.
            self.spawn(self._unsubscribe(room), "unsubscribe")
        if rooms:
            # The rows go now if the database answers (the room's slots free at once);
            # else the reconciler, which already owes them, deletes them later.
            self.spawn(self._remove_rows(member.id, rooms), "remove-rows")

    async def _remove_rows(self, member_id: uuid.UUID, rooms: list[str]) -> None:
        for room in rooms:
            await self.reconciler.remove(room, member_id)

    async def _unsubscribe(self, room: str) -> None:
        if self.membership.has_members(room) or room in self.membership.subscribing:
            return  # a new member reopened the room meanwhile
        try:
            await self.layer.group_discard(layer_group(room), self.recovery.channel)
        except Exception:  # a stale subscription only brings broadcasts nobody here wants
            logger.warning("Unsubscribing from %r failed", room, exc_info=True)

    async def reconcile(self) -> None:
        """Repair membership rows owed after database failures."""
        await self.membership.reconcile()

    async def track(self, member: LocalMember) -> None:
        """Show a member in the live presence of its rooms (its ``presence`` was just set)."""
        await self.membership.track(member)

    async def _catch_up(self) -> None:
        """After the layer came back (or peers took us for dead): history, then presence."""
        await self.ordering.fill_all()
        await self.tracker.announce()

    async def _beat(self, beat: Heartbeat, started: float) -> None:
        """Forget the presence of processes a heartbeat found gone, and tell the others."""
        if beat.removed_ids:
            await self.tracker.gone(beat.removed_ids)
        if beat.alive is not None:
            self._processes = len(beat.alive)
            self.tracker.prune(beat.alive, started)

    # Sending -------------------------------------------------------------------

    async def broadcast(self, message: PendingMessage, saved: SavedMessage | None) -> None:
        """Deliver a broadcast to this process's members now; queue it for the other processes.

        A retry of a message already stored (``saved.duplicate``) was delivered
        when it was first stored: its sender only gets the ack again.
        """
        seq, epoch = (saved.seq, saved.epoch) if saved is not None else (None, None)
        if saved is None or not saved.duplicate:
            cache = FrameCache(message.room, message.kind, message.text, message.data, seq, epoch)
            self.outbox.put(message.room, wire.item(cache))
            await self.ordering.offer(cache)
        if saved is not None and message.client_id is not None and message.sender is not None:
            await self.replies.ack(message, saved)

    async def flush_rooms(self, rooms: typing.Iterable[str]) -> None:
        """Wait until what this process accepted for ``rooms`` so far reached their local members.

        Stored and published (the writer), and not held behind another process's
        gap (the ordering): a reply or close never overtakes a saved broadcast.
        """
        rooms = list(rooms)
        if self.writer.pending:
            await self.writer.flush_rooms(rooms)
        await self.ordering.settled(rooms)

    async def _publish_batch(self, room: str, items: list[wire.Item]) -> None:
        await self.layer.group_send(
            layer_group(room), wire.fanout(room, items, self.process_id, self.outbox.stamp)
        )

    async def _publish_rooms(self, rooms: list[tuple[str, list[wire.Item]]]) -> None:
        await self.layer.group_send(
            control_group(), wire.fanout_rooms(rooms, self.process_id, self.outbox.stamp)
        )

    async def _read_since(self, room: str, since: int) -> tuple[list[FrameCache], int]:
        position = await self.history.read(room, since)
        frames = [delivery.saved_frame(room, message, position.epoch) for message in position.messages]
        return frames, position.last_seq

    # Receiving -----------------------------------------------------------------

    async def _read(self) -> None:
        """Receive layer messages for this process and act on them."""
        await inbox.read(self)

    async def handle(self, message: wire.LayerMessage) -> None:
        """Act on one layer message."""
        await inbox.handle(self, message)

    async def close_local(self, room: str | None, code: int = 1000, reason: str = "") -> int:
        """Close local members (of one room, or all); return how many."""
        targets = list(self.registry.members.values() if room is None else self.registry.rooms.get(room, {}))
        for member in targets:
            await member.close(code=code, reason=reason)
        return len(targets)

    async def flush_local(self) -> None:
        """Take every local member out of every room, keeping sockets open."""
        for member in list(self.registry.members.values()):
            for room in list(member.groups):
                await self.leave(member, room)

    async def sweep(self) -> int:
        """Close members idle for longer than their ``expires``; return how many."""
        expired = [member for member in list(self.registry.members.values()) if member.is_expired()]
        for member in expired:
            await member.close(code=1001, reason="Channel expired")
        return len(expired)

    def spawn(self, coro: typing.Coroutine[typing.Any, typing.Any, None], name: str) -> None:
        """Run a background task that ``stop`` cancels."""
        task = asyncio.create_task(coro, name=f"nexios_compat.hub-{name}")
        self._tasks.append(task)
        task.add_done_callback(self._tasks.remove)

    def gauges(self) -> dict[str, float]:
        """Return what the Prometheus gauges show for this hub."""
        return diagnostics.gauges(self)

    def stats(self) -> dict[str, typing.Any]:
        """Return counters and state for tests and diagnostics."""
        return diagnostics.stats(self)


def _seconds(value: typing.Any) -> float | None:
    return None if value is None else float(value)
