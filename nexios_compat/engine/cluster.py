"""Cluster membership: this process's row and heartbeat, and removal of silent peers."""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import os
import time
from collections.abc import Awaitable, Callable

from channels.layers import BaseChannelLayer
from django.db import connections

from .. import metrics
from ..rooms import control_group, layer_group
from ..stores.membership import BaseMembershipStore, Heartbeat, MembershipRow
from ..stores.services import MembershipService

logger = logging.getLogger("nexios_compat.engine")

Memberships = Callable[[], list[MembershipRow]]
# Told of every heartbeat, with the monotonic time its query began.
BeatListener = Callable[[Heartbeat, float], Awaitable[None]]


class ClusterMembership:
    """Registers this process, beats on its own database thread, and rejoins when peers drop it."""

    def __init__(
        self,
        process_id: str,
        store: BaseMembershipStore,
        layer: BaseChannelLayer,
        memberships: Memberships,
        on_rejoin: Callable[[], None],
        interval: float = 3.0,
        on_beat: BeatListener | None = None,
    ) -> None:
        self.process_id = process_id
        self.store = store
        self.layer = layer
        self.memberships = memberships
        self.on_rejoin = on_rejoin
        self.interval = interval
        self.on_beat = on_beat
        self._extra_beat: asyncio.TimerHandle | None = None
        self._extra_task: asyncio.Task[None] | None = None
        self.layer_channel = ""
        # Heartbeats run on their own database thread, so that a backlog of ORM
        # work on the shared one cannot make peers think this process is dead.
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="nexios-heartbeat")
        self.beats = MembershipService(store, executor=self._thread)
        self._members_lost = False
        # time.monotonic() of the last heartbeat that reached the database (health checks).
        self.last_beat = time.monotonic()
        # Silent processes this one removed (diagnostics).
        self.removed_peers = 0

    async def join(self, layer_channel: str) -> None:
        """Record this process; at exit, have peers remove it at their next heartbeat."""
        self.layer_channel = layer_channel
        await MembershipService(self.store).register_process(self.process_id, layer_channel, os.getpid())
        # daphne stops on SIGTERM without closing its applications: let the
        # peers remove this process at their next heartbeat, not after PROCESS_TIMEOUT.
        atexit.register(self._retire_at_exit)

    async def heartbeat(self) -> None:
        """Mark this process alive and remove the members of silent ones."""
        started = time.monotonic()
        try:
            beat = await self.beats.heartbeat(self.process_id)
        except Exception:
            metrics.DB_FAILURES.labels("heartbeat").inc()
            raise
        self.last_beat = time.monotonic()
        for layer_channel, rooms in beat.removed:
            self.removed_peers += 1
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
            await self.beats.register_process(self.process_id, self.layer_channel, os.getpid())
            self._members_lost = True
            self.on_rejoin()
        if self.on_beat is not None:
            await self.on_beat(beat, started)
        self._beat_at_expiry(beat.next_expiry)
        if self._members_lost:  # until it succeeds, at every heartbeat
            await self.beats.add_many(self.process_id, self.memberships())
            self._members_lost = False

    def _beat_at_expiry(self, next_expiry: float | None) -> None:
        """Beat again when a silent peer reaches PROCESS_TIMEOUT, if that comes before the next beat.

        So a dead process's members are removed PROCESS_TIMEOUT after its last
        beat, not up to a heartbeat interval later; live peers beat more often
        than that, so this costs nothing while all is well.
        """
        if next_expiry is None or next_expiry >= self.interval or self._extra_beat is not None:
            return
        loop = asyncio.get_running_loop()
        self._extra_beat = loop.call_later(max(next_expiry, 0.0) + 0.05, self._extra)

    def _extra(self) -> None:
        self._extra_beat = None
        self._extra_task = asyncio.get_running_loop().create_task(self._beat_quietly())

    async def _beat_quietly(self) -> None:
        try:
            await self.heartbeat()
        except Exception:  # the regular heartbeat reports failures
            logger.debug("Extra heartbeat failed", exc_info=True)

    async def leave(self) -> None:
        """Remove this process and its members now."""
        if self._extra_beat is not None:
            self._extra_beat.cancel()
        if self._extra_task is not None:
            self._extra_task.cancel()
        atexit.unregister(self._retire_at_exit)
        await MembershipService(self.store).unregister_process(self.process_id)
        await self.beats.close_connections()
        self._thread.shutdown(wait=False)

    def _retire_at_exit(self) -> None:
        try:
            self.store.retire_process(self.process_id)
            connections.close_all()
        except Exception:  # the interpreter is exiting: the peers' timeout still applies
            logger.debug("Could not retire process %s at exit", self.process_id, exc_info=True)
