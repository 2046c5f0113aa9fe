"""Live presence across processes: who is in each room, pushed to clients as it changes.

Phoenix-style contract (see the README): a client of a presence endpoint gets
``presence_state`` right after it joins, then ``presence_diff`` events batched
to at most one per room per ``PRESENCE_INTERVAL``; above ``PRESENCE_MAX_LIST``
keys it gets ``presence_count`` instead. Each process owns the entries of its
own connections and publishes their changes, versioned, to the room's layer
group; other processes keep replicas. A missed change shows as a version gap
and brings the origin's full entries; dead processes are forgotten when the
cluster's heartbeats remove them.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
import typing
from collections.abc import Callable

from channels.layers import BaseChannelLayer

from ... import metrics
from ...conf import get_config
from ...rooms import control_group, layer_group
from ...stores.services import MembershipService
from ...types import PayloadTypeEnum
from .. import wire
from ..protocols import LocalMember
from .roster import Entry, Roster, State

logger = logging.getLogger("nexios_compat.stores.membership")

_incarnations = itertools.count(1)


def _frame(payload: dict[str, typing.Any]) -> dict[str, typing.Any]:
    return {"type": "websocket.send", "text": json.dumps(payload, separators=(",", ":"), default=str)}


class PresenceTracker:
    """This process's presence: its connections' entries, replicas of the others', clients' events."""

    def __init__(
        self,
        layer: BaseChannelLayer,
        origin: str,
        channel: Callable[[], str],
        rows: MembershipService,
        interval: float,
        max_list: int,
    ) -> None:
        self.layer = layer
        self.origin = origin
        self.channel = channel
        self.rows = rows
        self.interval = interval
        self.max_list = max_list
        self.rooms: dict[str, Roster] = {}
        # Local clients per room that get events (presence members with JSON encoding).
        self.clients: dict[str, set[LocalMember]] = {}
        self._starting: dict[str, asyncio.Future[None]] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._joining: dict[str, int] = {}
        self._last_flush: dict[str, float] = {}
        # When each other origin was first heard of (so a heartbeat older than that cannot drop it).
        self._first_seen: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # Diagnostics: presence frames sent to clients, by type.
        self.sent: dict[str, int] = {"presence_state": 0, "presence_diff": 0, "presence_count": 0}

    # Local connections -------------------------------------------------------------

    async def join(self, member: LocalMember, room: str, entry: Entry) -> None:
        """Track a local connection's entry in a room and send it the room's state."""
        # While a join waits for the room's seed, a flush must not close the room.
        self._joining[room] = self._joining.get(room, 0) + 1
        try:
            roster = await self._open(room)
            roster.set(self.origin, str(member.id), entry)
        finally:
            self._joining[room] -= 1
            if not self._joining[room]:
                del self._joining[room]
        if member.payload_type == PayloadTypeEnum.JSON:
            self.clients.setdefault(room, set()).add(member)
            if len(roster.keys) > self.max_list:
                await self._send(member, self._count_frame(room, roster), "presence_count")
            else:
                await self._send(member, self._state_frame(room, roster.state()), "presence_state")
                roster.welcome(member)
        self._schedule(room)

    def leave(self, member: LocalMember, room: str) -> None:
        """Stop tracking a local connection in a room (its leave goes out at the next flush)."""
        roster = self.rooms.get(room)
        if roster is None:
            return
        clients = self.clients.get(room)
        if clients is not None:
            clients.discard(member)
        roster.forget_client(member)
        roster.drop(self.origin, str(member.id))
        self._schedule(room)

    async def _open(self, room: str) -> Roster:
        """Return a room's roster, seeding it on first use: from the database, then from the peers."""
        while room in self._starting:
            await asyncio.shield(self._starting[room])
        roster = self.rooms.get(room)
        if roster is not None:
            return roster
        ready = self._starting[room] = asyncio.get_running_loop().create_future()
        try:
            max_metas = get_config()["PRESENCE_MAX_METAS_PER_KEY"]
            roster = self.rooms[room] = Roster(self.origin, next(_incarnations), max_metas)
            # Ask every other holder for its entries: their answers replace the seed.
            await self._publish(room, roster, {}, full=True, want=True)
            await self._seed(room, roster)
            return roster
        finally:
            ready.set_result(None)
            del self._starting[room]

    async def _seed(self, room: str, roster: Roster) -> None:
        """Take the other processes' entries from their membership rows (answers to the hello may lag)."""
        try:
            rows = await self.rows.members(room)
        except Exception:
            logger.warning("Cannot read %r's presence rows; waiting for the peers' answers", room)
            return
        seeded: dict[str, dict[str, Entry | None]] = {}
        for row in rows:
            if row.presence is None or row.process_id == self.origin:
                continue
            seeded.setdefault(row.process_id, {})[str(row.channel_id)] = (
                str(row.presence["key"]),
                dict(row.presence["meta"]),
            )
        for origin, entries in seeded.items():
            if origin not in roster.versions and origin not in roster.stash:
                self._first_seen.setdefault(origin, time.monotonic())
                roster.apply(origin, entries)

    # Other processes ---------------------------------------------------------------

    async def receive(self, message: wire.Presence) -> None:
        """Apply another process's presence message; answer it when it asks."""
        if message.origin == self.origin:
            return
        roster = self.rooms.get(message.room)
        if roster is None:
            return  # nobody here tracks the room
        self._first_seen.setdefault(message.origin, time.monotonic())
        missed = roster.receive(message.origin, message.version, message.entries, message.full)
        if message.want:
            await self._send_entries(message.room, roster, message.reply_to)
        if missed:
            metrics.PRESENCE_REPAIRS.labels("gap").inc()
            await self._send_layer(
                message.reply_to, wire.presence_want(message.room, self.origin, self.channel())
            )
        self._schedule(message.room)

    async def answer(self, message: wire.PresenceWant) -> None:
        """Send our full entries of a room to the hub that asked."""
        roster = self.rooms.get(message.room)
        if roster is not None and message.origin != self.origin:
            await self._send_entries(message.room, roster, message.reply_to)

    def forget(self, origins: typing.Iterable[str]) -> None:
        """Drop every entry of processes found dead."""
        for origin in origins:
            if origin == self.origin:
                continue
            self._first_seen.pop(origin, None)
            rooms = [
                room
                for room, roster in self.rooms.items()
                if origin in roster.versions or roster.entries_of(origin)
            ]
            if rooms:
                metrics.PRESENCE_REPAIRS.labels("gone").inc()
            for room in rooms:
                self.rooms[room].forget(origin)
                self._schedule(room)

    def prune(self, alive: typing.Collection[str], since: float) -> None:
        """Forget origins missing from a list of live processes read at ``since`` (monotonic)."""
        known = {origin for roster in self.rooms.values() for origin, _ in roster.current.values()}
        known |= {origin for roster in self.rooms.values() for origin in roster.versions}
        dead = [
            o for o in known if o != self.origin and o not in alive and self._first_seen.get(o, 0) < since
        ]
        if dead:
            logger.info("Forgetting the presence of %d gone processes", len(dead))
            self.forget(dead)

    async def announce(self) -> None:
        """Send our entries of every room and ask for everyone's (after a rejoin or a layer recovery)."""
        for room, roster in list(self.rooms.items()):
            await self._publish(room, roster, roster.entries_of(self.origin), full=True, want=True)

    # Reading -------------------------------------------------------------------------

    def state(self, room: str) -> State | None:
        """Return a tracked room's state, or None when this process does not track it."""
        roster = self.rooms.get(room)
        return roster.state() if roster is not None else None

    # Flushing ------------------------------------------------------------------------

    def _schedule(self, room: str) -> None:
        """Flush a room now if the last flush was an interval ago, else when it will be."""
        if room in self._timers:
            return
        loop = asyncio.get_running_loop()
        wait = self._last_flush.get(room, -self.interval) + self.interval - time.monotonic()
        self._timers[room] = loop.call_later(max(wait, 0.0), self._spawn_flush, room)

    def _spawn_flush(self, room: str) -> None:
        task = asyncio.get_running_loop().create_task(
            self._flush(room), name="nexios_compat.stores.membership-flush"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush(self, room: str) -> None:
        """Publish this process's changes to the room, then send clients their diff (or count)."""
        self._timers.pop(room, None)
        self._last_flush[room] = time.monotonic()
        # One flush of a room at a time: versions go out in order, and a room
        # closed by one flush is never reopened under another's feet.
        lock = self._locks.setdefault(room, asyncio.Lock())
        async with lock:
            roster = self.rooms.get(room)
            if roster is None:
                return
            outgoing = roster.take_outgoing()
            clients = list(self.clients.get(room, ()))
            try:
                await self._tell(room, roster, clients)
            finally:
                if outgoing is not None:
                    version, changes = outgoing
                    await self._publish_changes(room, version, changes)
                if self.rooms.get(room) is roster and self._idle(room, roster):
                    self._close(room)

    def _idle(self, room: str, roster: Roster) -> bool:
        """Whether no local connection is in (or joining) a room."""
        return not roster.entries_of(self.origin) and not self.clients.get(room) and room not in self._joining

    async def _tell(self, room: str, roster: Roster, clients: list[LocalMember]) -> None:
        if len(roster.keys) > self.max_list:
            count = len(roster.keys)
            if not roster.counting or count != roster.counted:
                frame = self._count_frame(room, roster)
                for client in clients:
                    await self._send(client, frame, "presence_count")
            roster.counting, roster.counted = True, count
            roster.reset_view()
            return
        if roster.counting:
            roster.counting = False
            frame = self._state_frame(room, roster.state())
            for client in clients:
                await self._send(client, frame, "presence_state")
            roster.reset_view()
            return
        newcomers = set(roster.newcomers)
        common, own = roster.diffs()
        common_frame = self._diff_frame(room, *common) if common is not None else None
        for client in clients:
            if client in newcomers:
                if client in own:
                    await self._send(client, self._diff_frame(room, *own[client]), "presence_diff")
            elif common_frame is not None:
                await self._send(client, common_frame, "presence_diff")

    def _close(self, room: str) -> None:
        """Stop tracking a room no local connection is in."""
        self.rooms.pop(room, None)
        self.clients.pop(room, None)
        self._last_flush.pop(room, None)
        self._locks.pop(room, None)
        timer = self._timers.pop(room, None)
        if timer is not None:
            timer.cancel()

    async def stop(self) -> None:
        """Cancel timers and pending flushes."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=1.0)

    # Frames and layer messages ---------------------------------------------------------

    def _state_frame(self, room: str, state: State) -> dict[str, typing.Any]:
        return _frame({"type": "presence_state", "room": room, "state": state})

    def _diff_frame(self, room: str, joins: State, leaves: State) -> dict[str, typing.Any]:
        return _frame({"type": "presence_diff", "room": room, "joins": joins, "leaves": leaves})

    def _count_frame(self, room: str, roster: Roster) -> dict[str, typing.Any]:
        return _frame({"type": "presence_count", "room": room, "count": len(roster.keys)})

    async def _send(self, client: LocalMember, frame: dict[str, typing.Any], kind: str) -> None:
        if await client.send_frame(frame):
            self.sent[kind] += 1
            metrics.PRESENCE_FRAMES.labels(kind).inc()

    async def _send_entries(self, room: str, roster: Roster, reply_to: str) -> None:
        message = wire.presence(
            room,
            self.origin,
            self.channel(),
            roster.version,
            _wire_entries(roster.entries_of(self.origin)),
            full=True,
        )
        await self._send_layer(reply_to, message)

    async def _publish(
        self, room: str, roster: Roster, entries: dict[str, Entry], *, full: bool, want: bool
    ) -> None:
        message = wire.presence(
            room, self.origin, self.channel(), roster.version, _wire_entries(entries), full=full, want=want
        )
        await self._group_send(room, message)

    async def _publish_changes(
        self, room: str, version: tuple[int, int], changes: dict[str, Entry | None]
    ) -> None:
        message = wire.presence(room, self.origin, self.channel(), version, _wire_entries(changes))
        await self._group_send(room, message)

    async def _group_send(self, room: str, message: wire.LayerMessage) -> None:
        try:
            await self.layer.group_send(layer_group(room), message)
        except Exception:  # the next change shows a gap and brings full entries
            logger.warning("Publishing presence of %r failed", room, exc_info=True)

    async def _send_layer(self, channel: str, message: wire.LayerMessage) -> None:
        try:
            await self.layer.send(channel, message)
        except Exception:
            logger.warning("Sending presence to %s failed", channel, exc_info=True)

    async def gone(self, origins: list[str]) -> None:
        """Tell every process that these processes are gone; forget them here."""
        self.forget(origins)
        await self._send_control(wire.presence_gone(origins))

    async def _send_control(self, message: wire.LayerMessage) -> None:
        try:
            await self.layer.group_send(control_group(), message)
        except Exception:  # every peer's next heartbeat finds them gone anyway
            logger.warning("Announcing gone processes failed", exc_info=True)


def _wire_entries(entries: typing.Mapping[str, Entry | None]) -> dict[str, typing.Any]:
    return {cid: [entry[0], entry[1]] if entry is not None else None for cid, entry in entries.items()}
