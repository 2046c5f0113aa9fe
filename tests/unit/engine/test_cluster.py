"""Cluster membership: heartbeats keep healthy processes, remove silent ones, and rejoin."""

from __future__ import annotations

import typing
import uuid

from nexios_compat.engine.cluster import ClusterMembership
from nexios_compat.rooms import control_group, layer_group
from tests.support.fakes import FlakyLayer, MemoryMembershipStore


def member_rows(store: MemoryMembershipStore, process_id: str) -> set[tuple[str, uuid.UUID]]:
    return {key for key, (pid, _, _) in store.rows.items() if pid == process_id}


async def test_healthy_processes_stay_and_silent_ones_are_removed_with_their_members() -> None:
    store = MemoryMembershipStore(timeout=10)
    layer = FlakyLayer()
    rejoined: list[int] = []
    mine: list[tuple[str, uuid.UUID, dict[str, typing.Any], dict[str, typing.Any] | None]] = [
        ("r", uuid.uuid4(), {}, None)
    ]
    a = ClusterMembership("a", store, layer, lambda: mine, lambda: rejoined.append(1))
    b = ClusterMembership("b", store, layer, list, lambda: rejoined.append(1))
    await a.join("chan-a")
    await b.join("chan-b")
    store.add("r", mine[0][1], "a", {})
    dead_member = uuid.uuid4()
    store.register_process("dead", "chan-dead", 1)
    store.add("room-x", dead_member, "dead", {})
    try:
        for _ in range(5):  # both beat within the timeout: both stay
            store.now += 3
            await a.heartbeat()
            await b.heartbeat()
        assert set(store.processes) == {"a", "b"}
        assert member_rows(store, "a") == {("r", mine[0][1])}
        assert ("room-x", dead_member) not in store.rows
        assert (layer_group("room-x"), "chan-dead") in layer.discarded
        assert (control_group(), "chan-dead") in layer.discarded
        assert a.removed_peers + b.removed_peers == 1
        assert rejoined == []
    finally:
        await a.leave()
        await b.leave()
    assert store.processes == {}


async def test_a_process_its_peers_dropped_registers_again_with_its_members() -> None:
    store = MemoryMembershipStore(timeout=10)
    layer = FlakyLayer()
    rejoined: list[int] = []
    channel_id = uuid.uuid4()
    a = ClusterMembership(
        "a", store, layer, lambda: [("r", channel_id, {"n": 1}, None)], lambda: rejoined.append(1)
    )
    await a.join("chan-a")
    try:
        store.unregister_process("a")  # peers took it for dead (it was frozen)
        await a.heartbeat()
        assert "a" in store.processes
        assert store.rows[("r", channel_id)] == ("a", {"n": 1}, None)
        assert rejoined == [1]  # the layer subscriptions are re-added too
    finally:
        await a.leave()
