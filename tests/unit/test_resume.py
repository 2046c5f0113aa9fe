"""Resume never lies: ``?since=N&epoch=E`` replays everything after N, or nothing and says so."""

from __future__ import annotations

import typing

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command

from nexios_compat.engine import get_hub
from nexios_compat.engine.resume import decide
from nexios_compat.models import Message, Room
from nexios_compat.stores.history import DatabaseHistoryStore, Position
from nexios_compat.types import ChannelMessageDC
from nexios_compat.websockets.channels import ChannelBox
from tests.support.helpers import join, pending, receive_seqs, room_app

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("hub_cleanup")]


def save(room: str, *payloads: typing.Any) -> list[int]:
    """Store payloads straight through the store (no hub); return their seqs."""
    return [saved.seq for saved in DatabaseHistoryStore().append([pending(room, p) for p in payloads])]


def epoch_of(room: str) -> str:
    return Room.objects.get(name=room).epoch


def resume_frame(room: str, recovered: bool, epoch: str, last_seq: int) -> dict[str, typing.Any]:
    return {"type": "resume", "room": room, "epoch": epoch, "recovered": recovered, "last_seq": last_seq}


# The decision, on its own ----------------------------------------------------------


def messages(*seqs: int) -> list[ChannelMessageDC]:
    return [ChannelMessageDC(payload=seq, seq=seq) for seq in seqs]


@pytest.mark.parametrize(
    ("position", "since", "epoch", "recovered"),
    [
        (Position("e1", 5, messages(3, 4, 5)), 2, "e1", True),
        (Position("e1", 5, messages()), 5, "e1", True),  # nothing missed
        (Position("e1", 5, messages(3, 4, 5)), 2, "e0", False),  # another epoch
        (Position("e1", 5, messages(4, 5)), 2, "e1", False),  # 3 was trimmed
        (Position("e1", 5, messages(3, 5)), 2, "e1", False),  # a hole (a deleted message)
        (Position("e1", 5, messages()), 7, "e1", False),  # ahead of the room
        (Position("e1", 2, messages(1, 2)), 0, "", True),  # "I have nothing yet"
        (Position("e1", 2, messages(2)), 0, "", False),
        (Position("", 0, messages()), 0, "", True),  # no such room yet
        (Position("e1", 5, messages(3, 4, 5, 6)), 2, "e1", True),  # committed after the row was read
    ],
)
def test_recovered_only_when_everything_after_the_position_is_there(
    position: Position, since: int, epoch: str, recovered: bool
) -> None:
    outcome = decide("r", position, since, epoch)
    assert outcome.recovered is recovered
    assert outcome.messages == (position.messages if recovered else [])
    assert outcome.epoch == position.epoch


# Through a socket --------------------------------------------------------------------


async def test_full_resume_replays_everything_with_epochs_then_live() -> None:
    await sync_to_async(save)("full", *({"n": n} for n in range(1, 6)))
    epoch = await sync_to_async(epoch_of)("full")
    client, replayed = await join(room_app(), f"/room/full?since=2&epoch={epoch}&envelope=1")
    assert replayed == [
        resume_frame("full", True, epoch, 5),
        *({"room": "full", "seq": s, "epoch": epoch, "payload": {"n": s}} for s in (3, 4, 5)),
    ]
    await ChannelBox.group_send("full", {"n": 6}, save_history=True)
    await ChannelBox.group_send("full", {"unsaved": True})
    assert await client.receive_json_from() == {"room": "full", "seq": 6, "epoch": epoch, "payload": {"n": 6}}
    assert await client.receive_json_from() == {
        "room": "full",
        "seq": None,
        "epoch": None,
        "payload": {"unsaved": True},
    }
    await client.disconnect()


async def test_flush_starts_a_new_epoch_and_a_resume_across_it_replays_nothing() -> None:
    await sync_to_async(save)("flushed", *range(1, 4))
    old = await sync_to_async(epoch_of)("flushed")
    await ChannelBox.flush_history("flushed")
    await sync_to_async(save)("flushed", 4)  # numbering continues after a flush
    new = await sync_to_async(epoch_of)("flushed")
    assert new != old
    client, replayed = await join(room_app(), f"/room/flushed?since=1&epoch={old}&envelope=1")
    assert replayed == [resume_frame("flushed", False, new, 4)]
    await ChannelBox.group_send("flushed", 5, save_history=True)
    assert await client.receive_json_from() == {"room": "flushed", "seq": 5, "epoch": new, "payload": 5}
    # In the new epoch, the same position resumes fully.
    again, replayed = await join(room_app(), f"/room/flushed?since=3&epoch={new}&envelope=1")
    assert [frame.get("seq") for frame in replayed] == [None, 4, 5]
    assert replayed[0]["recovered"] is True
    for communicator in (client, again):
        await communicator.disconnect()


async def test_trimmed_position_is_not_recovered_but_the_epoch_stays(settings: typing.Any) -> None:
    settings.NEXIOS_COMPAT = {"HISTORY_MAX_MESSAGES": 2}
    await sync_to_async(save)("trim", *range(1, 6))
    epoch = await sync_to_async(epoch_of)("trim")
    assert await sync_to_async(DatabaseHistoryStore().prune)() == 3
    assert await sync_to_async(epoch_of)("trim") == epoch
    lost, replayed = await join(room_app(), f"/room/trim?since=2&epoch={epoch}&envelope=1")
    assert replayed == [resume_frame("trim", False, epoch, 5)]
    kept, replayed = await join(room_app(), f"/room/trim?since=3&epoch={epoch}&envelope=1")
    assert [frame.get("seq") for frame in replayed] == [None, 4, 5]
    for communicator in (lost, kept):
        await communicator.disconnect()


async def test_a_recreated_room_has_a_new_epoch() -> None:
    await sync_to_async(save)("again", 1, 2, 3)
    old = await sync_to_async(epoch_of)("again")
    await sync_to_async(Room.objects.filter(name="again").delete)()
    await sync_to_async(save)("again", 1)
    new = await sync_to_async(epoch_of)("again")
    assert new != old
    client, replayed = await join(room_app(), f"/room/again?since=0&epoch={old}&envelope=1")
    assert replayed == [resume_frame("again", False, new, 1)]
    await client.disconnect()


def test_manage_py_flush_recreates_rooms_in_a_new_epoch() -> None:
    save("managed", 1)
    old = epoch_of("managed")
    call_command("flush", interactive=False, verbosity=0)
    save("managed", 1)
    assert epoch_of("managed") != old


async def test_a_resume_from_nothing_gets_everything_or_nothing() -> None:
    fresh, replayed = await join(room_app(), "/room/new?since=0&epoch=&envelope=1")
    epoch = await sync_to_async(epoch_of)("new")  # joining created the room
    assert replayed == [resume_frame("new", True, epoch, 0)]
    await ChannelBox.group_send("new", "hi", save_history=True)
    assert await fresh.receive_json_from() == {"room": "new", "seq": 1, "epoch": epoch, "payload": "hi"}
    await fresh.disconnect()


async def test_a_deleted_message_makes_a_hole_that_is_not_recovered() -> None:
    await sync_to_async(save)("hole", 1, 2, 3)
    epoch = await sync_to_async(epoch_of)("hole")
    await sync_to_async(Message.objects.filter(room__name="hole", seq=2).delete)()
    client, replayed = await join(room_app(), f"/room/hole?since=1&epoch={epoch}&envelope=1")
    assert replayed == [resume_frame("hole", False, epoch, 3)]
    await client.disconnect()


async def test_a_room_recreated_under_its_members_is_delivered_from_seq_one_at_once() -> None:
    client, _ = await join(room_app(), "/room/reborn?envelope=1")
    for n in range(3):
        await client.send_json_to({"n": n})
    assert await receive_seqs(client, 3) == [1, 2, 3]
    old = await sync_to_async(epoch_of)("reborn")
    await sync_to_async(Room.objects.filter(name="reborn").delete)()  # an admin deletes the room
    for n in range(3, 6):
        await client.send_json_to({"n": n})
    frames = [await client.receive_json_from(timeout=5) for _ in range(3)]
    assert [(f["seq"], f["payload"]["n"]) for f in frames] == [(1, 3), (2, 4), (3, 5)]
    assert await sync_to_async(epoch_of)("reborn") != old
    hub = await get_hub()
    assert hub.ordering.epochs["reborn"] != old
    # delivered as saved, not after REORDER_TIMEOUT
    assert (hub.ordering.held_back, hub.ordering.gap_fills) == (0, 0)
    await client.disconnect()
