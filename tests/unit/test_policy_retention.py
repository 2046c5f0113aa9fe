"""A room's rules say how much of its history is kept; the room's own row (admin) still wins."""

from __future__ import annotations

import typing

import pytest
from asgiref.sync import sync_to_async

from nexios_compat.models import Room
from nexios_compat.policy import RoomPolicy, RoomRule
from nexios_compat.websockets.channels import ChannelBox

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("hub_cleanup")]


async def saved(room: str) -> list[typing.Any]:
    history = await ChannelBox.show_history(room)
    assert isinstance(history, list)
    return [message.payload for message in history]


async def test_rules_keep_their_rooms_history_to_their_own_bound(settings: typing.Any) -> None:
    settings.NEXIOS_COMPAT = {
        "HISTORY_MAX_MESSAGES": 1000,
        "ROOM_POLICY": RoomPolicy([RoomRule(prefix="short-", keep_messages=3)]),
    }
    for room in ("short-1", "short-2", "long-1"):
        for n in range(5):
            await ChannelBox.group_send(room, n, save_history=True)
    # The admin set short-2's own bound: the row wins over the rule.
    await sync_to_async(Room.objects.filter(name="short-2").update)(max_messages=4)
    await ChannelBox.prune_history()
    assert await saved("short-1") == [2, 3, 4]
    assert await saved("short-2") == [1, 2, 3, 4]
    assert await saved("long-1") == [0, 1, 2, 3, 4]  # the site's bound
