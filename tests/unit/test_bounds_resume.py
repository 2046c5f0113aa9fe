"""Bounds on a resume: its cost does not depend on the room's last_seq, and its reads are capped."""

from __future__ import annotations

import tracemalloc
import typing

import pytest
from asgiref.sync import sync_to_async

from nexios_compat.engine.resume import decide
from nexios_compat.models import Message, Room
from nexios_compat.stores.history import DatabaseHistoryStore, Position
from nexios_compat.types import ChannelMessageDC
from tests.support.helpers import join, pending, room_app

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("hub_cleanup")]

# A resume's own work is a few small objects: well under this, however long the room has lived.
SMALL = 256 * 1024


def save(room: str, *payloads: typing.Any) -> list[int]:
    """Store payloads straight through the store (no hub); return their seqs."""
    return [saved.seq for saved in DatabaseHistoryStore().append([pending(room, p) for p in payloads])]


def age(room: str, last_seq: int) -> str:
    """Make a room look long-lived: counter at ``last_seq``, its few messages the newest; return its epoch."""
    row = Room.objects.get(name=room)
    count = Message.objects.filter(room=row).count()
    for offset, message in enumerate(Message.objects.filter(room=row).order_by("-seq")):
        Message.objects.filter(pk=message.pk).update(seq=last_seq - offset)
    Room.objects.filter(pk=row.pk).update(last_seq=last_seq)
    assert Message.objects.filter(room=row, seq__gt=last_seq - count).count() == count
    return row.epoch


def peak(work: typing.Callable[[], typing.Any]) -> tuple[int, typing.Any]:
    """Return the peak of Python allocations while ``work`` runs, and its result."""
    tracemalloc.start()
    try:
        result = work()
        return tracemalloc.get_traced_memory()[1], result
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("last_seq", [10**3, 10**6, 10**8])
def test_the_decision_costs_the_same_whatever_the_rooms_last_seq(last_seq: int) -> None:
    position = Position(
        "e1", last_seq, [ChannelMessageDC(payload=s, seq=s) for s in range(last_seq - 2, last_seq + 1)]
    )
    used, outcome = peak(lambda: decide("r", position, 0, ""))
    assert outcome.recovered is False and outcome.last_seq == last_seq
    assert used < SMALL
    # And when everything is there, the answer is still decided without the range.
    used, outcome = peak(lambda: decide("r", position, last_seq - 3, "e1"))
    assert outcome.recovered is True and len(outcome.messages) == 3
    assert used < SMALL


@pytest.mark.parametrize("last_seq", [10**6, 10**8])
def test_a_resume_from_nothing_against_a_long_lived_room_costs_what_a_new_room_costs(last_seq: int) -> None:
    save("old", {"n": 1}, {"n": 2}, {"n": 3})
    epoch = age("old", last_seq)
    save("new", {"n": 1}, {"n": 2}, {"n": 3})
    store = DatabaseHistoryStore()
    store.read("new", 0)  # warm the ORM's caches so both reads are measured alike
    new_used, new_position = peak(lambda: decide("new", store.read("new", 0), 0, ""))
    old_used, old_position = peak(lambda: decide("old", store.read("old", 0), 0, ""))
    assert new_position.recovered is True and len(new_position.messages) == 3
    assert (
        old_position.recovered is False and old_position.last_seq == last_seq and old_position.epoch == epoch
    )
    assert old_used < new_used + SMALL


async def test_through_a_socket_the_long_lived_room_answers_not_recovered_and_continues_live() -> None:
    await sync_to_async(save)("aged", {"n": 1}, {"n": 2})
    epoch = await sync_to_async(age)("aged", 10**8)
    tracemalloc.start()
    try:
        client, replayed = await join(room_app(), "/room/aged?since=0&epoch=&envelope=1")
        used = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert replayed == [
        {"type": "resume", "room": "aged", "epoch": epoch, "recovered": False, "last_seq": 10**8}
    ]
    # A hub, a layer and a socket cost a few MB; the range would cost gigabytes.
    assert used < 32 * 1024 * 1024
    await client.disconnect()


# Capped reads -------------------------------------------------------------------------


def test_a_resume_needing_more_than_the_cap_reads_no_message() -> None:
    save("long", *({"n": n} for n in range(1, 11)))
    position = DatabaseHistoryStore().read("long", 2, limit=5)
    assert position.complete is False and position.messages == [] and position.last_seq == 10
    assert decide("long", position, 2, position.epoch).recovered is False


def test_a_resume_within_the_cap_reads_everything() -> None:
    save("short", *({"n": n} for n in range(1, 11)))
    position = DatabaseHistoryStore().read("short", 5, limit=5)
    assert position.complete is True and [m.seq for m in position.messages] == [6, 7, 8, 9, 10]
    assert decide("short", position, 5, position.epoch).recovered is True


def test_a_read_stops_at_the_byte_cap() -> None:
    save("big", *("x" * 1000 for _ in range(10)))
    position = DatabaseHistoryStore().read("big", 0, limit=100, max_bytes=4500)
    assert position.complete is False and len(position.messages) <= 4
    assert decide("big", position, 0, position.epoch).recovered is False


async def test_past_the_count_cap_a_socket_is_told_not_recovered_and_gets_nothing_replayed(
    settings: typing.Any,
) -> None:
    settings.NEXIOS_COMPAT = {"RESUME_MAX_MESSAGES": 3}
    await sync_to_async(save)("capped", *({"n": n} for n in range(1, 6)))
    epoch = await sync_to_async(lambda: Room.objects.get(name="capped").epoch)()
    client, replayed = await join(room_app(), f"/room/capped?since=1&epoch={epoch}&envelope=1")
    assert replayed == [
        {"type": "resume", "room": "capped", "epoch": epoch, "recovered": False, "last_seq": 5}
    ]
    await client.disconnect()
    client, replayed = await join(room_app(), f"/room/capped?since=2&epoch={epoch}&envelope=1")
    assert replayed[0]["recovered"] is True and [f["seq"] for f in replayed[1:]] == [3, 4, 5]
    await client.disconnect()


async def test_past_the_byte_cap_a_socket_is_told_not_recovered(settings: typing.Any) -> None:
    settings.NEXIOS_COMPAT = {"RESUME_MAX_BYTES": 2500}
    await sync_to_async(save)("heavy", *({"pad": "x" * 1000} for _ in range(5)))
    client, replayed = await join(room_app(), "/room/heavy?since=0&epoch=&envelope=1")
    assert [frame.get("recovered") for frame in replayed] == [False]
    await client.disconnect()


async def test_a_best_effort_replay_past_the_cap_sends_the_newest_messages(settings: typing.Any) -> None:
    settings.NEXIOS_COMPAT = {"RESUME_MAX_MESSAGES": 3}
    await sync_to_async(save)("plain", *({"n": n} for n in range(1, 8)))
    client, replayed = await join(room_app(), "/room/plain?since=0&envelope=1")
    assert [frame["seq"] for frame in replayed] == [5, 6, 7]
    await client.disconnect()
