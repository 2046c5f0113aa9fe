"""Room membership in one process: joining (with resume), leaving, and the layer subscription per room."""

from __future__ import annotations

import asyncio
import logging
import typing

from channels.layers import BaseChannelLayer

from ..conf import get_config
from ..exceptions import HistoryUnavailable
from ..policy import get_policy
from ..rooms import check_group_name, layer_group
from ..stores.membership import MembershipRow
from ..stores.services import HistoryService
from ..types import ChannelAddStatusEnum, ChannelRemoveStatusEnum
from . import delivery
from .ordering import RoomOrdering
from .presence.tracker import PresenceTracker
from .protocols import LocalMember
from .reconcile import MembershipReconciler
from .recovery import LayerRecovery
from .registry import LocalRegistry, Slot
from .resume import Resume, decide
from .writer import TRANSIENT

logger = logging.getLogger("nexios_compat.hub")


class RoomMembership:
    """Who is in which room here; the first member subscribes the room, the last unsubscribes it."""

    def __init__(
        self,
        layer: BaseChannelLayer,
        registry: LocalRegistry,
        ordering: RoomOrdering,
        recovery: LayerRecovery,
        history: HistoryService,
    ) -> None:
        self.layer = layer
        self.registry = registry
        self.ordering = ordering
        self.recovery = recovery
        self.history = history
        self.reconciler: MembershipReconciler | None = None  # set by the hub
        self.tracker: PresenceTracker | None = None  # set by the hub
        self.subscribing: dict[str, asyncio.Future[None]] = {}

    def _rows(self) -> MembershipReconciler:
        assert self.reconciler is not None, "the hub sets the reconciler"
        return self.reconciler

    def register(self, member: LocalMember) -> None:
        """Track a member created in this process (for expiry and ``send_to``)."""
        self.registry.register(member)

    def is_member(self, member: LocalMember, room: str) -> bool:
        """Whether a local member is in a room."""
        return self.registry.slot(member, room) is not None

    def has_members(self, room: str) -> bool:
        """Whether a room has members in this process."""
        return bool(self.registry.rooms.get(room))

    async def join(
        self, member: LocalMember, room: str, since: int | None = None, epoch: str | None = None
    ) -> ChannelAddStatusEnum:
        """Add a member to a room; with ``since``, first replay saved messages after it.

        With ``epoch`` too the member first gets a ``resume`` frame, and the replay
        is all or nothing (see ``nexios_compat.engine.resume``).
        """
        check_group_name(room)
        while True:
            if self.is_member(member, room):
                return ChannelAddStatusEnum.CHANNEL_EXIST
            if self.registry.open_room(room):
                await self._subscribe(room)
                break
            if room not in self.subscribing:
                break
            await asyncio.shield(self.subscribing[room])  # then look again: it may have failed
        slot = self.registry.add(member, room)
        if since is not None:
            config = get_config()
            slot.buffer = delivery.ReplayBuffer(
                config["RESUME_MAX_BUFFERED"], config["RESUME_MAX_BUFFERED_BYTES"]
            )
        try:
            await self._enter(member, slot, room, since, epoch)
        except BaseException:
            # Staying would show live broadcasts after a gap the replay was to fill.
            slot.buffer = None
            await self.leave(member, room)
            raise
        entry = _room_presence(member, room)
        if entry is not None and self.tracker is not None:
            await self.tracker.join(member, room, entry)
        return ChannelAddStatusEnum.CHANNEL_ADDED

    async def _enter(
        self, member: LocalMember, slot: Slot, room: str, since: int | None, epoch: str | None
    ) -> None:
        """Record the membership and replay what the member missed (live broadcasts wait meanwhile)."""
        try:
            await self._rows().add(room, member.id, member.metadata, _row_presence(member, room))
            if since is not None and epoch is not None:
                try:
                    await self._resume(member, slot, room, since, epoch)
                except TRANSIENT as exc:
                    raise HistoryUnavailable(f"Cannot resume {room!r} now") from exc
            elif since is not None:
                try:
                    # Best effort: past the cap, the newest messages (as if trimmed).
                    history = await self.history.fetch(room, since, get_config()["RESUME_MAX_MESSAGES"])
                except TRANSIENT as exc:
                    raise HistoryUnavailable(f"Cannot replay {room!r}'s history now") from exc
                saved = [delivery.saved_frame(room, m) for m in history]
                await delivery.replay(member, slot, saved, since, self.ordering.next_seq(room))
        finally:
            slot.buffer = None

    async def track(self, member: LocalMember) -> None:
        """Show a member (whose ``presence`` was just set) in the presence of the rooms it is in."""
        assert member.presence is not None
        for room in list(member.groups):
            await self._rows().add(room, member.id, member.metadata, _row_presence(member, room))
            entry = _room_presence(member, room)
            if entry is not None and self.tracker is not None:
                await self.tracker.join(member, room, entry)

    async def _resume(self, member: LocalMember, slot: Slot, room: str, since: int, epoch: str) -> None:
        """Answer a resume, then replay all that was missed, or nothing (live resumes after the counter)."""
        config = get_config()
        position = await self.history.read(
            room, since, config["RESUME_MAX_MESSAGES"], config["RESUME_MAX_BYTES"]
        )
        outcome = decide(room, position, since, epoch)
        buffer = slot.buffer
        if isinstance(buffer, delivery.ReplayBuffer) and buffer.overflowed:
            # Live broadcasts outran the read: answer from the newest one seen (the
            # saved ones it dropped are in history, which the client reloads).
            last_seq = max(outcome.last_seq, buffer.highest or 0)
            outcome = Resume(room, False, outcome.epoch, last_seq, [])
            buffer.reset()
        await member.send_frame(outcome.frame())
        saved = [delivery.saved_frame(room, m, outcome.epoch) for m in outcome.messages]
        after = since if outcome.recovered else outcome.last_seq
        await delivery.replay(member, slot, saved, after, self.ordering.next_seq(room))

    async def _subscribe(self, room: str) -> None:
        """Start receiving a room's broadcasts (its first local member is joining)."""
        ready = self.subscribing[room] = asyncio.get_running_loop().create_future()
        try:
            # Read the room's last number *before* subscribing: whatever is saved
            # later reaches this process, live or, if it was published before the
            # subscription took effect, from history when the next one shows the gap.
            await self._start_ordering(room)
            try:
                await self.layer.group_add(layer_group(room), self.recovery.channel)
            except Exception:
                logger.warning("Subscribing to %r failed; retrying in the background", room, exc_info=True)
                self.recovery.failed()
        except BaseException:
            if not self.registry.rooms.get(room):
                self.registry.close_room(room)
                self.ordering.forget(room)
            raise
        finally:
            ready.set_result(None)
            del self.subscribing[room]

    async def _start_ordering(self, room: str) -> bool:
        try:
            last_seq, epoch = await self.history.head(room)
            self.ordering.start(room, last_seq + 1, epoch or None)
        except TRANSIENT:
            # The database is down: the room's saved broadcasts reach its members as
            # they come (from the one writer, in order but unchecked) until ``reconcile``.
            logger.warning("Cannot read %r's last seq; its broadcasts go unordered for now", room)
            self._rows().dirty = True
            return False
        return True

    async def reconcile(self) -> None:
        """Repair membership rows owed after database failures; order rooms joined meanwhile."""
        await self._rows().run()
        for room in [room for room in self.registry.rooms if self.ordering.next_seq(room) is None]:
            if room not in self.subscribing and not await self._start_ordering(room):
                return

    async def leave(self, member: LocalMember, room: str) -> ChannelRemoveStatusEnum:
        """Remove a member from a room; drop the layer subscription with the last one."""
        if room not in self.registry.rooms:
            return ChannelRemoveStatusEnum.GROUP_DOES_NOT_EXIST
        if not self.is_member(member, room):
            return ChannelRemoveStatusEnum.CHANNEL_DOES_NOT_EXIST
        status = ChannelRemoveStatusEnum.CHANNEL_REMOVED
        if member.presence is not None and self.tracker is not None:
            self.tracker.leave(member, room)
        if self.registry.remove(member, room) and room not in self.subscribing:
            self.registry.close_room(room)
            self.ordering.forget(room)
            status = ChannelRemoveStatusEnum.GROUP_REMOVED
            try:
                await self.layer.group_discard(layer_group(room), self.recovery.channel)
            except Exception:  # a stale subscription only brings broadcasts nobody here wants
                logger.warning("Unsubscribing from %r failed", room, exc_info=True)
        # Never raises for the database: the row is then owed to the reconciler.
        await self._rows().remove(room, member.id)
        return status

    async def discard(self, member: LocalMember) -> None:
        """Take a member out of all its rooms and stop tracking it, whatever fails on the way."""
        try:
            for room in list(member.groups):
                await self.leave(member, room)
        finally:
            self.registry.unregister(member)

    def drop(self, member: LocalMember) -> list[str]:
        """Take a member out of all its rooms now, without awaiting; return the rooms left empty.

        For a handler that is being cancelled: nothing here can be interrupted or
        lost. Its membership rows are owed to the reconciler (which deletes rows
        of members no longer live); the caller unsubscribes the returned rooms.
        """
        emptied = []
        for room in list(member.groups):
            if member.presence is not None and self.tracker is not None:
                self.tracker.leave(member, room)
            if self.registry.remove(member, room) and room not in self.subscribing:
                self.registry.close_room(room)
                self.ordering.forget(room)
                emptied.append(room)
            self._rows().dirty = True
        self.registry.unregister(member)
        return emptied

    def memberships(self) -> list[MembershipRow]:
        """Every ``(room, member id, metadata, presence)`` of this process."""
        return [
            (room, member.id, member.metadata, _row_presence(member, room))
            for room, member in self.registry.memberships()
        ]


def _room_presence(member: LocalMember, room: str) -> tuple[str, dict[str, typing.Any]] | None:
    """A member's presence as ``room``'s rules let it show (None: not shown there)."""
    return get_policy().rule_for(room).presence_entry(member.presence)


def _row_presence(member: LocalMember, room: str) -> dict[str, typing.Any] | None:
    """What a membership row records of a member's presence in ``room`` (peers seed from it)."""
    entry = _room_presence(member, room)
    if entry is None:
        return None
    key, meta = entry
    return {"key": key, "meta": meta}
