"""Cluster-wide membership rows: which channel is in which room, held by which process.

Not live presence (``engine.presence``), though presence entries ride on these rows.
Stores are synchronous; ``MembershipService`` is how async code reaches them.
"""

from __future__ import annotations

import dataclasses
import datetime
import socket
import typing
import uuid
import warnings

from django.db import transaction
from django.db.models import Count
from django.utils import timezone
from django.utils.module_loading import import_string

from ..conf import get_config


@dataclasses.dataclass(frozen=True)
class MemberInfo:
    """A live member as the shared membership records it."""

    channel_id: uuid.UUID
    room: str
    process_id: str
    layer_channel: str
    metadata: dict[str, typing.Any]
    joined: datetime.datetime
    # {"key": ..., "meta": {...}} for a connection of a presence endpoint, else None.
    presence: dict[str, typing.Any] | None = None


@dataclasses.dataclass(frozen=True)
class Heartbeat:
    """What a heartbeat found: whether our process row still existed, and whom it removed."""

    # False when peers had already deleted our row (we were silent too long): rejoin.
    registered: bool
    # (layer channel, rooms) of every silent process whose rows were deleted.
    removed: list[tuple[str, list[str]]]
    # Ids of the processes deleted (silent for PROCESS_TIMEOUT).
    removed_ids: list[str] = dataclasses.field(default_factory=list)
    # Ids of every process still registered, this one included (None: the store cannot tell).
    alive: frozenset[str] | None = None
    # Seconds until the first live peer would go silent for PROCESS_TIMEOUT (None: no peers).
    next_expiry: float | None = None


# One membership as a process holds it: (room, channel id, metadata, presence or None).
MembershipRow = tuple[str, uuid.UUID, dict[str, typing.Any], dict[str, typing.Any] | None]


class BaseMembershipStore:
    """Where membership lives; methods are synchronous (``MembershipService`` runs them)."""

    def register_process(self, process_id: str, layer_channel: str, pid: int) -> None:
        """Record a process and the layer channel its hub listens on."""
        raise NotImplementedError

    def unregister_process(self, process_id: str) -> None:
        """Forget a process and all its members."""
        raise NotImplementedError

    def retire_process(self, process_id: str) -> None:
        """Mark a process as silent, so that the next heartbeat of a peer removes it and its members."""
        raise NotImplementedError

    def heartbeat(self, process_id: str) -> Heartbeat:
        """Mark a process alive; delete silent ones, returning their channels and rooms."""
        raise NotImplementedError

    def add(
        self,
        room: str,
        channel_id: uuid.UUID,
        process_id: str,
        metadata: dict[str, typing.Any],
        presence: dict[str, typing.Any] | None = None,
    ) -> None:
        """Record a channel's membership of a room."""
        raise NotImplementedError

    def add_many(self, process_id: str, members: list[MembershipRow]) -> None:
        """Record several ``(room, channel_id, metadata, presence)`` memberships of one process."""
        for room, channel_id, metadata, presence in members:
            self.add(room, channel_id, process_id, metadata, presence)

    def remove(self, room: str, channel_id: uuid.UUID) -> None:
        """Forget a channel's membership of a room."""
        raise NotImplementedError

    def reconcile(self, process_id: str, members: list[MembershipRow]) -> tuple[int, int]:
        """Make a process's memberships exactly ``members``; return ``(removed, added)``."""
        wanted = {(row[0], row[1]): row for row in members}
        have = {(m.room, m.channel_id) for m in self.members() if m.process_id == process_id}
        stale = have - wanted.keys()
        for room, channel_id in stale:
            self.remove(room, channel_id)
        missing = [wanted[pair] for pair in wanted.keys() - have]
        if missing:
            self.add_many(process_id, missing)
        return len(stale), len(missing)

    def members(self, room: str | None = None) -> list[MemberInfo]:
        """Return the members of one room, or of all rooms, oldest first."""
        raise NotImplementedError

    def counts(self) -> dict[str, int]:
        """Return the number of members per room that has any."""
        raise NotImplementedError

    def count(self, room: str) -> int:
        """Return the number of members of one room, in every process."""
        return self.counts().get(room, 0)

    def locate(self, channel_id: uuid.UUID) -> str | None:
        """Return the layer channel of the hub holding ``channel_id``, if any."""
        raise NotImplementedError

    def clear(self) -> None:
        """Forget every membership."""
        raise NotImplementedError


class DatabaseMembershipStore(BaseMembershipStore):
    """Membership in the ``Process`` and ``Member`` models."""

    def register_process(self, process_id: str, layer_channel: str, pid: int) -> None:
        """Create or refresh the process row."""
        from ..models import Process

        Process.objects.update_or_create(
            id=process_id,
            defaults={
                "layer_channel": layer_channel,
                "hostname": socket.gethostname()[:255],
                "pid": pid,
                "last_heartbeat": timezone.now(),
            },
        )

    def unregister_process(self, process_id: str) -> None:
        """Delete the process row; its members go with it."""
        from ..models import Process

        Process.objects.filter(id=process_id).delete()

    def retire_process(self, process_id: str) -> None:
        """Date the process's last heartbeat back to the epoch."""
        from ..models import Process

        epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
        Process.objects.filter(id=process_id).update(last_heartbeat=epoch)

    def heartbeat(self, process_id: str) -> Heartbeat:
        """Refresh our heartbeat and remove processes silent for ``PROCESS_TIMEOUT``."""
        from ..models import Member, Process

        now = timezone.now()
        registered = Process.objects.filter(id=process_id).update(last_heartbeat=now) > 0
        limit = now - datetime.timedelta(seconds=float(get_config()["PROCESS_TIMEOUT"]))
        dead = list(Process.objects.filter(last_heartbeat__lt=limit).exclude(id=process_id))
        removed = []
        for process in dead:
            rooms = list(
                Member.objects.filter(process=process)
                .order_by()  # the model's ordering would defeat DISTINCT
                .values_list("room__name", flat=True)
                .distinct()
            )
            removed.append((process.layer_channel, rooms))
        if dead:
            Process.objects.filter(id__in=[p.id for p in dead]).delete()
        beats = dict(Process.objects.values_list("id", "last_heartbeat"))
        peers = [beat for pid, beat in beats.items() if pid != process_id]
        next_expiry = (
            (
                min(peers) + datetime.timedelta(seconds=float(get_config()["PROCESS_TIMEOUT"])) - now
            ).total_seconds()
            if peers
            else None
        )
        return Heartbeat(
            registered=registered,
            removed=removed,
            removed_ids=[p.id for p in dead],
            alive=frozenset(beats),
            next_expiry=next_expiry,
        )

    def add(
        self,
        room: str,
        channel_id: uuid.UUID,
        process_id: str,
        metadata: dict[str, typing.Any],
        presence: dict[str, typing.Any] | None = None,
    ) -> None:
        """Insert (or refresh) the member row."""
        from ..models import Member, Room

        room_row = Room.objects.get_or_create(name=room)[0]
        Member.objects.update_or_create(
            room=room_row,
            channel_id=channel_id,
            defaults={"process_id": process_id, "metadata": jsonable(metadata), "presence": presence},
        )

    def add_many(self, process_id: str, members: list[MembershipRow]) -> None:
        """Insert (or refresh) member rows in one transaction."""
        with transaction.atomic():
            for room, channel_id, metadata, presence in members:
                self.add(room, channel_id, process_id, metadata, presence)

    def remove(self, room: str, channel_id: uuid.UUID) -> None:
        """Delete the member row."""
        from ..models import Member

        Member.objects.filter(room__name=room, channel_id=channel_id).delete()

    def reconcile(self, process_id: str, members: list[MembershipRow]) -> tuple[int, int]:
        """Delete the process's rows of gone sockets and add those missing, in one transaction."""
        from ..models import Member, Process

        with transaction.atomic():
            if not Process.objects.filter(id=process_id).exists():
                return 0, 0  # peers removed us: the heartbeat rejoins with every member
            rows = list(
                Member.objects.filter(process_id=process_id).values_list("pk", "room__name", "channel_id")
            )
            wanted = {(row[0], row[1]): row for row in members}
            stale = [pk for pk, room, channel_id in rows if (room, channel_id) not in wanted]
            have = {(room, channel_id) for _, room, channel_id in rows}
            if stale:
                Member.objects.filter(pk__in=stale).delete()
            missing = [wanted[pair] for pair in wanted.keys() - have]
            for room, channel_id, metadata, presence in missing:
                self.add(room, channel_id, process_id, metadata, presence)
        return len(stale), len(missing)

    def members(self, room: str | None = None) -> list[MemberInfo]:
        """Return members with their process's layer channel."""
        from ..models import Member

        rows = Member.objects.select_related("room", "process").order_by("joined", "pk")
        if room is not None:
            rows = rows.filter(room__name=room)
        return [
            MemberInfo(
                channel_id=row.channel_id,
                room=row.room.name,
                process_id=row.process_id,
                layer_channel=row.process.layer_channel,
                metadata=row.metadata,
                joined=row.joined,
                presence=row.presence,
            )
            for row in rows
        ]

    def counts(self) -> dict[str, int]:
        """Return members per room."""
        from ..models import Member

        return {
            row["room__name"]: row["n"] for row in Member.objects.values("room__name").annotate(n=Count("pk"))
        }

    def count(self, room: str) -> int:
        """Return the members of one room."""
        from ..models import Member

        return Member.objects.filter(room__name=room).count()

    def locate(self, channel_id: uuid.UUID) -> str | None:
        """Return the holder's layer channel."""
        from ..models import Member

        return (
            Member.objects.filter(channel_id=channel_id)
            .values_list("process__layer_channel", flat=True)
            .first()
        )

    def clear(self) -> None:
        """Delete every member row."""
        from ..models import Member

        Member.objects.all().delete()


def jsonable(metadata: dict[str, typing.Any]) -> dict[str, typing.Any]:
    """Keep what JSON can hold; show anything else by its ``repr``."""
    import json

    try:
        json.dumps(metadata)
        return dict(metadata)
    except (TypeError, ValueError):
        return {str(key): value if _is_json(value) else repr(value) for key, value in metadata.items()}


def _is_json(value: typing.Any) -> bool:
    import json

    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def get_membership_store() -> BaseMembershipStore:
    """Return an instance of the configured ``MEMBERSHIP_STORE``."""
    store_class = import_string(get_config()["MEMBERSHIP_STORE"])
    return typing.cast(BaseMembershipStore, store_class())


_DEPRECATED = {
    "BasePresenceStore": BaseMembershipStore,
    "DatabasePresenceStore": DatabaseMembershipStore,
    "get_presence_store": get_membership_store,
}


def __getattr__(name: str) -> typing.Any:
    """Return a name of the previous release with a ``DeprecationWarning``."""
    if name in _DEPRECATED:
        new = _DEPRECATED[name]
        warnings.warn(f"{name} is deprecated; use {new.__name__}.", DeprecationWarning, stacklevel=2)
        return new
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
