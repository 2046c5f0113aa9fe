"""A hub's counters and gauges, for tests, ``/metrics`` and diagnostics."""

from __future__ import annotations

import collections
import typing

from .cluster import ClusterMembership
from .ordering import RoomOrdering
from .presence.tracker import PresenceTracker
from .reconcile import MembershipReconciler
from .recovery import LayerRecovery
from .registry import LocalRegistry
from .shutdown import GracefulShutdown
from .writer import HistoryWriter


class Observed(typing.Protocol):
    """The parts of a hub whose counters and gauges are read (the ``Hub`` is one)."""

    process_id: str
    registry: LocalRegistry
    ordering: RoomOrdering
    recovery: LayerRecovery
    tracker: PresenceTracker
    writer: HistoryWriter
    reconciler: MembershipReconciler
    cluster: ClusterMembership
    shutdown: GracefulShutdown
    received: collections.Counter[str]

    @property
    def layer_channel(self) -> str:
        """The layer channel the hub receives on."""


def gauges(hub: Observed) -> dict[str, float]:
    """Return what the Prometheus gauges show for this hub."""
    return {
        "connections": len(hub.shutdown.sockets),
        "rooms": len(hub.registry.rooms),
        "members": sum(len(slots) for slots in hub.registry.rooms.values()),
        "queue_depth": hub.writer.pending,
        "dirty": 1.0 if hub.reconciler.dirty else 0.0,
        "presence_rooms": len(hub.tracker.rooms),
    }


def stats(hub: Observed) -> dict[str, typing.Any]:
    """Return counters and state for tests and diagnostics."""
    return {
        "process_id": hub.process_id,
        "layer_channel": hub.layer_channel,
        "layer_messages_received": sum(hub.received.values()),
        "received": dict(hub.received),
        "held_back": hub.ordering.held_back,
        "gap_fills": hub.ordering.gap_fills,
        "recoveries": hub.recovery.recoveries,
        "probe_groups": list(hub.recovery.probe_groups),
        "removed_peers": hub.cluster.removed_peers,
        "writer": {
            "pending": hub.writer.pending,
            "transactions": hub.writer.transactions,
            "stored": hub.writer.stored,
            "failed": hub.writer.failed,
            "waits": hub.writer.waits,
            "failing": hub.writer.failing,
            "unavailable": hub.writer.unavailable,
        },
        "membership": {
            "dirty": hub.reconciler.dirty,
            "removed": hub.reconciler.removed,
            "added": hub.reconciler.added,
        },
        "presence": {
            "sent": dict(hub.tracker.sent),
            "rooms": {
                room: {
                    "keys": len(roster.keys),
                    "version": list(roster.version),
                    "peers": {origin: list(version) for origin, version in roster.versions.items()},
                    "stashed": {origin: len(changes) for origin, changes in roster.stash.items()},
                }
                for room, roster in hub.tracker.rooms.items()
            },
        },
        "groups": {room: len(members) for room, members in hub.registry.rooms.items()},
        "channels": len(hub.registry.members),
    }
