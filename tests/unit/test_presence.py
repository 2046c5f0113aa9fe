"""Live presence in one process: the contract of presence_state, presence_diff and presence_count."""

from __future__ import annotations

import typing

import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from prometheus_client import REGISTRY

from nexios_compat import WebSocket, get_application
from nexios_compat.engine import current_hub
from nexios_compat.websockets.channels import Channel, ChannelBox
from nexios_compat.websockets.consumers import WebSocketEndpoint

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("hub_cleanup")]


class Lobby(WebSocketEndpoint):
    """Joins the room in the path; the username comes from the query string."""

    encoding = "json"
    presence = True

    async def on_connect(self, ws: WebSocket) -> None:
        await ws.accept()
        assert self.channel is not None
        name = ws.query_params.get("username")
        if name:
            self.channel.metadata["username"] = name
        await self.join_group(ws.path_params["room"])

    async def on_receive(self, ws: WebSocket, data: typing.Any) -> None:
        if data == "leave":
            await self.leave_group(ws.path_params["room"])


class TextLobby(Lobby):
    encoding = "text"


class Quiet(WebSocketEndpoint):
    """The same room without presence."""

    encoding = "json"

    async def on_connect(self, ws: WebSocket) -> None:
        await ws.accept()
        await self.join_group(ws.path_params["room"])


async def presence_handler(ws: WebSocket) -> None:
    await ws.accept()
    channel = Channel(ws, "json", metadata={"username": "fn"})
    await ChannelBox.track_presence(channel, key="fn-key")
    await ChannelBox.add_channel_to_group(channel, "room")
    while True:
        await ws.receive_json()


def application() -> typing.Any:
    app = get_application()
    app.add_ws_route(Lobby.as_route("/p/{room}"))
    app.add_ws_route(TextLobby.as_route("/t/{room}"))
    app.add_ws_route(Quiet.as_route("/q/{room}"))
    app.add_ws_route("/fn", presence_handler)
    return app


@pytest.fixture
def fast(settings: typing.Any) -> None:
    settings.NEXIOS_COMPAT = {"PRESENCE_INTERVAL": 0.05}


async def connect(app: typing.Any, path: str, user: typing.Any = None) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(app, path)
    if user is not None:
        communicator.scope["user"] = user
    connected, _ = await communicator.connect()
    assert connected
    return communicator


def keys_of(state: dict[str, typing.Any]) -> dict[str, list[str]]:
    return {key: sorted(m["channel_id"] for m in value["metas"]) for key, value in state.items()}


async def next_of(communicator: WebsocketCommunicator, kind: str) -> dict[str, typing.Any]:
    frame = await communicator.receive_json_from(timeout=5)
    assert frame["type"] == kind, frame
    return typing.cast(dict[str, typing.Any], frame)


@pytest.mark.usefixtures("fast")
async def test_state_on_join_then_diffs_for_join_second_tab_and_leave() -> None:
    app = application()
    ann = await connect(app, "/p/room?username=ann")
    state = await next_of(ann, "presence_state")
    assert state["room"] == "room"
    assert list(state["state"]) == ["ann"]  # the joiner sees itself
    (meta,) = state["state"]["ann"]["metas"]
    assert meta["username"] == "ann" and isinstance(meta["online_at"], float)
    ann_id = meta["channel_id"]

    bob = await connect(app, "/p/room?username=bob")
    bob_state = await next_of(bob, "presence_state")
    assert set(bob_state["state"]) == {"ann", "bob"}
    diff = await next_of(ann, "presence_diff")
    assert (set(diff["joins"]), diff["leaves"]) == ({"bob"}, {})

    tab = await connect(app, "/p/room?username=ann")  # a second tab of the same user
    assert keys_of((await next_of(tab, "presence_state"))["state"])["ann"].__len__() == 2
    diff = await next_of(bob, "presence_diff")
    assert set(diff["joins"]) == {"ann"} and len(diff["joins"]["ann"]["metas"]) == 1
    assert diff["joins"]["ann"]["metas"][0]["channel_id"] != ann_id  # a meta under the key, not a key
    assert (await next_of(ann, "presence_diff"))["joins"] == diff["joins"]

    await tab.disconnect()  # closing one of two tabs leaves the key in place
    diff = await next_of(bob, "presence_diff")
    assert diff["joins"] == {} and list(diff["leaves"]) == ["ann"]
    state = await ChannelBox.presence("room")
    assert keys_of(state) == {"ann": [ann_id], "bob": keys_of(bob_state["state"])["bob"]}
    assert await ChannelBox.presence_count("room") == 2

    await ann.send_json_to("leave")  # leaving the room (socket open) is a leave too
    diff = await next_of(bob, "presence_diff")
    assert diff["leaves"]["ann"]["metas"][0]["channel_id"] == ann_id
    assert await ChannelBox.presence_count("room") == 1
    for communicator in (ann, bob):
        await communicator.disconnect()


@pytest.mark.usefixtures("fast")
async def test_keys_come_from_the_django_user_and_from_track_presence() -> None:
    app = application()
    ada = await User.objects.acreate(username="ada")
    first = await connect(app, "/p/room?username=ignored", user=ada)
    state = await next_of(first, "presence_state")
    assert list(state["state"]) == [str(ada.pk)]
    fn = await connect(app, "/fn")
    state = await next_of(fn, "presence_state")
    assert set(state["state"]) == {str(ada.pk), "fn-key"}
    assert state["state"]["fn-key"]["metas"][0]["username"] == "fn"
    anonymous = await connect(app, "/p/room")  # no user, no username: the channel id
    state = await next_of(anonymous, "presence_state")
    (own,) = set(state["state"]) - {str(ada.pk), "fn-key"}
    assert state["state"][own]["metas"][0]["channel_id"] == own
    for communicator in (first, fn, anonymous):
        await communicator.disconnect()


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.usefixtures("fast")
async def test_events_are_plain_json_with_envelopes_and_counted_in_metrics() -> None:
    app = application()
    states = metric("nexios_compat_presence_frames_total", type="presence_state")
    enveloped = await connect(app, "/p/room?username=env&envelope=1&epoch=")
    frame = await next_of(enveloped, "presence_state")  # not {"room", "seq", "payload"}
    assert set(frame) == {"type", "room", "state"}
    assert metric("nexios_compat_presence_frames_total", type="presence_state") == states + 1
    assert metric("nexios_compat_presence_rooms") >= 1
    await enveloped.disconnect()


@pytest.mark.usefixtures("fast")
async def test_other_encodings_and_endpoints_without_presence_get_no_events() -> None:
    app = application()
    watcher = await connect(app, "/p/room?username=w")
    await next_of(watcher, "presence_state")
    text = await connect(app, "/t/room?username=t")  # present, but gets no events
    quiet = await connect(app, "/q/room")  # not present, and gets no events
    diff = await next_of(watcher, "presence_diff")
    assert set(diff["joins"]) == {"t"}
    assert set(await ChannelBox.presence("room")) == {"w", "t"}
    await watcher.send_json_to("nothing")
    assert await text.receive_nothing(timeout=0.3)
    assert await quiet.receive_nothing(timeout=0.1)
    for communicator in (watcher, text, quiet):
        await communicator.disconnect()


async def test_a_burst_of_joins_costs_each_member_a_handful_of_diffs(settings: typing.Any) -> None:
    settings.NEXIOS_COMPAT = {"PRESENCE_INTERVAL": 0.5}
    app = application()
    first = await connect(app, "/p/burst?username=u-first")
    await next_of(first, "presence_state")
    others = [await connect(app, f"/p/burst?username=u{n}") for n in range(100)]
    joined: set[str] = set()
    frames = 0
    while len(joined) < 100:
        diff = await next_of(first, "presence_diff")
        frames += 1
        joined |= set(diff["joins"])
    assert joined == {f"u{n}" for n in range(100)}
    # 100 joins took at most a few intervals; one diff per interval at most.
    assert frames <= 5, frames
    # The last joiner's state already had everyone: it gets no diff of itself or of earlier joiners.
    last = others[-1]
    assert len((await next_of(last, "presence_state"))["state"]) == 101
    assert await last.receive_nothing(timeout=0.7)
    for communicator in (first, *others):
        await communicator.disconnect()


async def test_above_the_list_limit_members_get_counts(settings: typing.Any) -> None:
    settings.NEXIOS_COMPAT = {"PRESENCE_INTERVAL": 0.05, "PRESENCE_MAX_LIST": 2}
    app = application()
    a = await connect(app, "/p/big?username=a")
    await next_of(a, "presence_state")
    b = await connect(app, "/p/big?username=b")
    await next_of(b, "presence_state")
    await next_of(a, "presence_diff")
    c = await connect(app, "/p/big?username=c")  # 3 keys > 2: counts only
    assert await next_of(c, "presence_count") == {"type": "presence_count", "room": "big", "count": 3}
    assert (await next_of(a, "presence_count"))["count"] == 3
    await c.disconnect()  # back under the limit: the whole state again
    state = await next_of(a, "presence_state")
    assert set(state["state"]) == {"a", "b"}
    for communicator in (a, b):
        await communicator.disconnect()


@pytest.mark.usefixtures("fast")
async def test_presence_is_read_from_the_rows_where_this_process_tracks_no_member() -> None:
    app = application()
    ann = await connect(app, "/p/room?username=ann")
    await next_of(ann, "presence_state")
    hub = current_hub()
    assert hub is not None
    tracked = await ChannelBox.presence("room")
    hub.tracker._close("room")  # as a process with no member in the room sees it
    assert hub.tracker.state("room") is None
    assert await ChannelBox.presence("room") == tracked
    await ann.disconnect()
