"""What makes rooms span processes, driven inside one process: ordering, recovery, heartbeats.

Another process is played by publishing straight to the layer and writing
straight to the database; daphne-level tests are in ``test_multiprocess.py``.
"""

from __future__ import annotations

import datetime
import typing
import uuid

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from nexios_compat.encoding import FrameCache
from nexios_compat.engine import Hub, get_hub, get_layer, publish_remote
from nexios_compat.engine.ordering import RoomSequencer
from nexios_compat.models import Member, Process, Room
from nexios_compat.rooms import control_group, layer_group
from nexios_compat.stores.history import DatabaseHistoryStore, PendingMessage, SavedMessage
from nexios_compat.websockets.channels import ChannelBox
from tests.support import helpers
from tests.support.helpers import pending, receive_seqs, until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("hub_cleanup")]

TIMEOUT = 5.0


def frame(seq: int) -> FrameCache:
    return FrameCache("r", "json", f'{{"n":{seq}}}', None, seq)


def seqs(frames: list[FrameCache]) -> list[int | None]:
    return [cache.seq for cache in frames]


# RoomSequencer ----------------------------------------------------------------


def test_sequencer_passes_messages_in_order_straight_through() -> None:
    sequencer = RoomSequencer(1)
    assert [seqs(sequencer.offer(frame(n))) for n in (1, 2, 3)] == [[1], [2], [3]]
    assert not sequencer.waiting


def test_sequencer_holds_messages_ahead_of_a_gap_until_it_closes() -> None:
    sequencer = RoomSequencer(5)
    assert sequencer.offer(frame(7)) == []
    assert sequencer.offer(frame(6)) == []
    assert sequencer.waiting
    assert seqs(sequencer.offer(frame(5))) == [5, 6, 7]
    assert not sequencer.waiting
    assert sequencer.next_seq == 8


def test_sequencer_drops_repeats_and_messages_from_before_it_started() -> None:
    sequencer = RoomSequencer(3)
    assert sequencer.offer(frame(2)) == []
    assert seqs(sequencer.offer(frame(3))) == [3]
    assert sequencer.offer(frame(3)) == []


def test_sequencer_fills_gaps_from_history_skipping_what_history_lost() -> None:
    sequencer = RoomSequencer(1)
    sequencer.offer(frame(4))
    sequencer.offer(frame(6))
    # Message 2 was pruned; 7 is in history but was not received live yet.
    assert seqs(sequencer.fill([frame(1), frame(3), frame(4), frame(5), frame(7)])) == [1, 3, 4, 5, 6, 7]
    assert sequencer.offer(frame(7)) == []
    assert seqs(sequencer.offer(frame(8))) == [8]


# The hub ----------------------------------------------------------------------


async def join(name: str) -> tuple[WebsocketCommunicator, str]:
    """Join room ``name`` (enveloped frames); return the client and its channel id."""
    before = {member.id for member in await ChannelBox.group(name)}
    communicator, _ = await helpers.join(helpers.room_app(), f"/room/{name}?envelope=1")
    (channel_id,) = [str(member.id) for member in await ChannelBox.group(name) if member.id not in before]
    return communicator, channel_id


async def save_elsewhere(room: str, count: int) -> list[tuple[PendingMessage, SavedMessage]]:
    """Save messages as another process would, without publishing them."""
    messages = [pending(room, {"n": i}) for i in range(count)]
    saved = await sync_to_async(DatabaseHistoryStore().append)(messages)
    return list(zip(messages, saved, strict=True))


async def test_saved_broadcasts_published_out_of_order_are_delivered_in_order() -> None:
    client, _ = await join("r")
    saved = await save_elsewhere("r", 4)
    for index in (2, 0, 3, 1):  # as two processes racing to publish might
        await publish_remote(*saved[index])
    assert await receive_seqs(client, 4) == [1, 2, 3, 4]
    assert (await get_hub()).ordering.held_back == 2
    await client.disconnect()


async def test_a_gap_that_stays_open_is_filled_from_history(settings: typing.Any) -> None:
    settings.NEXIOS_COMPAT = {"REORDER_TIMEOUT": 0.1}
    client, _ = await join("r")
    saved = await save_elsewhere("r", 3)
    # The process that saved 1 and 2 died before publishing them.
    await publish_remote(*saved[2])
    assert await receive_seqs(client, 3) == [1, 2, 3]
    assert (await get_hub()).ordering.gap_fills == 1
    await client.disconnect()


async def test_a_resume_that_read_a_message_still_on_its_way_gets_it_once() -> None:
    first, _ = await join("r")
    (message,) = await save_elsewhere("r", 1)  # saved, not yet published
    communicator = WebsocketCommunicator(helpers.room_app(), "/room/r?envelope=1&since=0")
    assert (await communicator.connect())[0]
    assert (await communicator.receive_json_from(timeout=TIMEOUT))["seq"] == 1  # replayed
    await communicator.receive_json_from(timeout=TIMEOUT)  # {"joined": ...}
    await publish_remote(*message)
    assert await receive_seqs(first, 1) == [1]
    await publish_remote(*(await save_elsewhere("r", 1))[0])
    assert await receive_seqs(communicator, 1) == [2]  # not 1 again
    await first.disconnect()
    await communicator.disconnect()


async def test_a_gap_filled_after_history_lost_what_was_held_delivers_it_in_order() -> None:
    client, _ = await join("r")
    saved = await save_elsewhere("r", 4)
    # History loses the room (a flush) and seq 1 is never published: the held
    # messages, received out of order, are all the gap fill has to deliver.
    assert await ChannelBox.flush_history("r") == 4
    for index in (3, 1, 2):
        await publish_remote(*saved[index])
    assert await receive_seqs(client, 3) == [2, 3, 4]
    hub = await get_hub()
    assert (hub.ordering.held_back, hub.ordering.gap_fills) == (3, 1)
    await client.disconnect()


async def test_unsaved_broadcasts_wait_behind_a_held_saved_one() -> None:
    client, _ = await join("r")
    saved = await save_elsewhere("r", 2)
    await publish_remote(*saved[1])
    await ChannelBox.group_send("r", {"live": True})  # queues behind the held seq 2
    await publish_remote(*saved[0])
    assert await receive_seqs(client, 2) == [1, 2]
    assert await client.receive_json_from(timeout=TIMEOUT) == {
        "room": "r",
        "seq": None,
        "payload": {"live": True},
    }
    await client.disconnect()


async def test_a_saved_message_the_layer_refuses_is_still_delivered_here_and_announced_later(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client, _ = await join("r")
    hub = await get_hub()
    layer = hub.layer
    real_group_send = layer.group_send
    resyncs: list[dict[str, typing.Any]] = []
    down = True

    async def group_send(group: str, message: dict[str, typing.Any]) -> None:
        if down:
            raise ConnectionError("layer down")
        if group == control_group():
            resyncs.append(message)
        await real_group_send(group, message)

    monkeypatch.setattr(layer, "group_send", group_send)
    await client.send_json_to({"during": "outage"})
    # Saved, and shown to this process's members although it could not be published.
    assert await client.receive_json_from(timeout=TIMEOUT) == {
        "room": "r",
        "seq": 1,
        "payload": {"during": "outage"},
    }
    down = False
    await until(lambda: hub.recovery.recoveries >= 1, "the hub to recover")
    assert [message["type"] for message in resyncs] == ["nexios.resync"]
    await client.disconnect()


async def test_lost_subscriptions_are_noticed_by_the_probe_and_missed_messages_delivered(
    settings: typing.Any,
) -> None:
    settings.NEXIOS_COMPAT = {"HEARTBEAT_INTERVAL": 0.1}
    client, _ = await join("r")
    hub = await get_hub()
    layer = get_layer()
    # What a restarted Redis does: every group is gone, the reader notices nothing.
    for group in (layer_group("r"), control_group(), hub.probe_group):
        await layer.group_discard(group, hub.layer_channel)
    lost = await save_elsewhere("r", 1)
    await publish_remote(*lost[0])  # reaches nobody
    await until(lambda: hub.recovery.recoveries >= 1, "the probe to notice")
    # The message published while unsubscribed comes from history; later ones live.
    assert await receive_seqs(client, 1) == [1]
    await publish_remote(*(await save_elsewhere("r", 1))[0])
    assert await receive_seqs(client, 1) == [2]
    await client.disconnect()


# Heartbeats ---------------------------------------------------------------------


async def test_a_silent_process_and_its_members_are_removed(settings: typing.Any) -> None:
    settings.NEXIOS_COMPAT = {"HEARTBEAT_INTERVAL": 0.1, "PROCESS_TIMEOUT": 1.0}
    client, _ = await join("r")
    hub = await get_hub()
    ghost_channel = await get_layer().new_channel("nexios_compat.hub.")
    await get_layer().group_add(layer_group("r"), ghost_channel)

    def add_ghost() -> None:
        old = timezone.now() - datetime.timedelta(seconds=30)
        Process.objects.create(id="ghost", layer_channel=ghost_channel, last_heartbeat=old)
        Member.objects.create(room=Room.objects.get(name="r"), channel_id=uuid.uuid4(), process_id="ghost")

    await sync_to_async(add_ghost)()
    assert len(await ChannelBox.group("r")) == 2

    async def ghost_gone() -> bool:
        return len(await ChannelBox.group("r")) == 1

    await until(ghost_gone, "the ghost to be removed")
    assert not await sync_to_async(Process.objects.filter(id="ghost").exists)()
    assert await sync_to_async(Process.objects.filter(id=hub.process_id).exists)()
    # Its layer subscription went too: a broadcast now queues nothing for it.
    await ChannelBox.group_send("r", {"after": "ghost"})
    await client.receive_json_from(timeout=TIMEOUT)
    assert get_layer().channels.get(ghost_channel) is None
    await client.disconnect()


async def test_heartbeats_leave_a_live_peer_and_its_members_alone(settings: typing.Any) -> None:
    settings.NEXIOS_COMPAT = {"HEARTBEAT_INTERVAL": 0.1, "PROCESS_TIMEOUT": 5.0}
    client, _ = await join("r")
    hub = await get_hub()
    peer_channel = uuid.uuid4()

    def add_peer() -> datetime.datetime:
        now = timezone.now()
        Process.objects.create(id="peer", layer_channel="peer-layer-channel", last_heartbeat=now)
        Member.objects.create(room=Room.objects.get(name="r"), channel_id=peer_channel, process_id="peer")
        return now

    added = await sync_to_async(add_peer)()

    async def beaten_since() -> bool:
        # Ten of our beats after the peer's, far from its PROCESS_TIMEOUT.
        row = await Process.objects.filter(id=hub.process_id).afirst()
        return row is not None and row.last_heartbeat > added + datetime.timedelta(seconds=1)

    await until(beaten_since, "this hub to beat for a second after the peer did")
    assert await Process.objects.filter(id="peer").aexists(), "a live peer was taken for dead"
    assert [str(m.id) for m in await ChannelBox.group("r") if str(m.id) == str(peer_channel)]
    await client.disconnect()


async def test_a_process_its_peers_removed_registers_again_with_its_members(settings: typing.Any) -> None:
    settings.NEXIOS_COMPAT = {"HEARTBEAT_INTERVAL": 0.1}
    client, channel_id = await join("r")
    hub: Hub = await get_hub()
    # What a peer does when this process was silent for PROCESS_TIMEOUT.
    await sync_to_async(Process.objects.filter(id=hub.process_id).delete)()
    await get_layer().group_discard(layer_group("r"), hub.layer_channel)

    async def back() -> bool:
        return [str(member.id) for member in await ChannelBox.group("r")] == [channel_id]

    await until(back, "the process to rejoin")
    await until(lambda: hub.recovery.recoveries >= 1, "its subscriptions to be re-added")
    await publish_remote(*(await save_elsewhere("r", 1))[0])
    assert await receive_seqs(client, 1) == [1]
    await client.disconnect()
