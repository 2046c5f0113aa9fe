"""A room's rules say whether its live presence shows members, and which of their metadata."""

from __future__ import annotations

import typing

import pytest
from asgiref.sync import sync_to_async

from nexios_compat import WebSocket, get_application
from nexios_compat.models import Member
from nexios_compat.policy import RoomPolicy, RoomRule
from nexios_compat.websockets.channels import ChannelBox
from tests.unit.test_presence import Lobby, application, connect, next_of

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("hub_cleanup")]

POLICY = RoomPolicy(
    [
        RoomRule(prefix="quiet-", presence=False),
        RoomRule(prefix="named-", presence_fields=("username",)),
    ]
)


@pytest.fixture
def rules(settings: typing.Any) -> None:
    settings.NEXIOS_COMPAT = {"PRESENCE_INTERVAL": 0.05, "ROOM_POLICY": POLICY}


@pytest.mark.usefixtures("rules")
async def test_a_room_whose_rule_turns_presence_off_shows_nobody() -> None:
    app = application()
    ann = await connect(app, "/p/quiet-1?username=ann")
    assert await ChannelBox.presence("quiet-1") == {}
    assert await rows_of("quiet-1") == [None]  # nothing for other processes to seed from either
    # The same endpoint in an ordinary room shows its members, as before.
    bob = await connect(app, "/p/open-1?username=bob")
    assert list((await next_of(bob, "presence_state"))["state"]) == ["bob"]
    assert ann.output_queue.empty()  # no presence frame reached the quiet room's member
    await ann.disconnect()
    await bob.disconnect()


class WithEmail(Lobby):
    """Keeps an e-mail address in its metadata, which a room may not want every member to see."""

    async def on_connect(self, ws: WebSocket) -> None:
        assert self.channel is not None
        self.channel.metadata["email"] = "ann@example.com"
        await super().on_connect(ws)


async def rows_of(room: str) -> list[typing.Any]:
    """The presence each membership row of ``room`` records (what other processes seed from)."""

    def read() -> list[typing.Any]:
        return list(Member.objects.filter(room__name=room).values_list("presence", flat=True))

    return await sync_to_async(read)()


@pytest.mark.usefixtures("rules")
async def test_a_rule_limits_the_metadata_a_meta_shows_to_other_members() -> None:
    app = get_application()
    app.add_ws_route(WithEmail.as_route("/e/{room}"))
    ann = await connect(app, "/e/named-1?username=ann")
    state = await next_of(ann, "presence_state")
    (meta,) = state["state"]["ann"]["metas"]
    assert set(meta) == {"channel_id", "online_at", "username"}
    rows = await rows_of("named-1")
    assert set(rows[0]["meta"]) == {"channel_id", "online_at", "username"}
    # Elsewhere the same connection's meta keeps its metadata, as before.
    bob = await connect(app, "/e/open-2?username=bob")
    (meta,) = (await next_of(bob, "presence_state"))["state"]["bob"]["metas"]
    assert meta["email"] == "ann@example.com"
    await ann.disconnect()
    await bob.disconnect()
