"""Bounds on presence metas: only the fields a site allows are sent, and a meta has a size."""

from __future__ import annotations

import typing

import pytest
from channels.testing import WebsocketCommunicator

from nexios_compat import WebSocket, get_application
from nexios_compat.websockets.channels import Channel, ChannelBox

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("hub_cleanup")]


def application() -> typing.Any:
    app = get_application()

    @app.websocket("/meta")
    async def meta(ws: WebSocket) -> None:
        await ws.accept()
        metadata = {"username": "ann", "token": "s3cret", "bio": ws.query_params.get("bio", "")}
        channel = Channel(ws, "json", metadata=metadata)
        await ChannelBox.track_presence(channel, key="ann")
        await ChannelBox.add_channel_to_group(channel, "room")
        while True:
            await ws.receive_json()

    return app


async def own_meta(path: str = "/meta") -> dict[str, typing.Any]:
    communicator = WebsocketCommunicator(application(), path)
    assert (await communicator.connect())[0]
    frame = await communicator.receive_json_from(timeout=5)
    assert frame["type"] == "presence_state", frame
    await communicator.disconnect()
    [meta] = frame["state"]["ann"]["metas"]
    return typing.cast(dict[str, typing.Any], meta)


async def test_by_default_every_metadata_field_is_shown_as_before(settings: typing.Any) -> None:
    settings.NEXIOS_COMPAT = {"PRESENCE_INTERVAL": 0.05}
    meta = await own_meta()
    assert {"channel_id", "online_at", "username", "token", "bio"} <= meta.keys()


async def test_only_the_allowed_fields_are_sent_to_members(settings: typing.Any) -> None:
    settings.NEXIOS_COMPAT = {"PRESENCE_INTERVAL": 0.05, "PRESENCE_META_FIELDS": ["username"]}
    meta = await own_meta()
    assert set(meta) == {"channel_id", "online_at", "username"}


async def test_a_meta_past_its_size_carries_only_who_and_since_when(settings: typing.Any) -> None:
    settings.NEXIOS_COMPAT = {"PRESENCE_INTERVAL": 0.05, "PRESENCE_MAX_META_BYTES": 200}
    meta = await own_meta("/meta?bio=" + "x" * 500)
    assert set(meta) == {"channel_id", "online_at"}
    assert "username" in await own_meta("/meta?bio=short")


def test_a_key_shows_its_oldest_tabs_and_the_next_one_joins_when_one_leaves() -> None:
    from nexios_compat.engine.presence.roster import Roster

    roster = Roster("here", 1, max_metas=2)
    for n in range(5):
        roster.set("here", f"c{n}", ("ann", {"n": n}))
    assert roster.state() == {"ann": {"metas": [{"n": 0}, {"n": 1}]}}
    joins, leaves = roster.diffs()[0] or ({}, {})
    assert sorted(m["n"] for m in joins["ann"]["metas"]) == [0, 1] and leaves == {}
    roster.drop("here", "c0")
    assert roster.diffs()[0] == ({"ann": {"metas": [{"n": 2}]}}, {"ann": {"metas": [{"n": 0}]}})
    roster.drop("here", "c4")  # never shown: nothing to tell
    assert roster.diffs()[0] is None
