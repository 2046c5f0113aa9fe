"""Faults around a socket, driven in one process: stalls, abandoned handshakes, a failing database."""

from __future__ import annotations

import asyncio
import typing
import uuid

import pytest
from channels.testing import WebsocketCommunicator
from django.db import OperationalError
from prometheus_client import REGISTRY

from nexios_compat import WebSocket, get_application
from nexios_compat.engine import current_hub, get_hub
from nexios_compat.exceptions import HistoryUnavailable
from nexios_compat.stores.services import MembershipService
from nexios_compat.websockets._routes import WebsocketRoute
from nexios_compat.websockets.channels import Channel, ChannelBox, PayloadTypeEnum
from nexios_compat.websockets.consumers import WebSocketEndpoint
from tests.support.helpers import until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("hub_cleanup")]


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Gated(WebSocketEndpoint):
    """Echoes frames; ``gate`` (per test) holds the handshake or the first frame."""

    encoding = "json"
    gate: asyncio.Event
    hold_handshake = False

    async def on_connect(self, ws: WebSocket) -> None:
        if self.hold_handshake:
            await self.gate.wait()  # as a handshake queued behind a stalled database
        await ws.accept()
        await self.join_group("g")
        await self.broadcast({"joined": True}, "g", save_history=True)

    async def on_receive(self, ws: WebSocket, data: typing.Any) -> None:
        await self.gate.wait()  # the first frame stalls; the client keeps sending
        await ws.send_json(data)


def app_for(endpoint: type[WebSocketEndpoint]) -> typing.Any:
    app = get_application()
    app.add_ws_route(endpoint.as_route("/g"))
    return app


async def test_frames_are_charged_to_the_rate_limit_when_they_arrived(settings: typing.Any) -> None:
    settings.NEXIOS_COMPAT = {"RATE_LIMIT_MESSAGES": 50, "RATE_LIMIT_BURST": 5}
    endpoint = typing.cast(type[Gated], type("Stalled", (Gated,), {"gate": asyncio.Event()}))
    closed_before = metric("nexios_compat_rate_limited_total", action="close")  # a process-wide counter
    communicator = WebsocketCommunicator(app_for(endpoint), "/g")
    assert (await communicator.connect())[0]
    assert await communicator.receive_json_from() == {"joined": True}
    for n in range(40):  # at most 25 a second: half the limit
        await communicator.send_json_to({"n": n})
        await asyncio.sleep(0.04)
    endpoint.gate.set()  # the stall ends: 39 frames are waiting
    echoed = [(await communicator.receive_json_from(timeout=5))["n"] for _ in range(40)]
    assert echoed == list(range(40))
    assert metric("nexios_compat_rate_limited_total", action="close") == closed_before
    await communicator.disconnect()


async def test_a_handshake_the_client_gave_up_on_runs_no_on_connect_side_effects() -> None:
    endpoint = typing.cast(
        type[Gated], type("SlowHandshake", (Gated,), {"gate": asyncio.Event(), "hold_handshake": True})
    )
    abandoned = metric("nexios_compat_handshakes_abandoned_total")
    communicator = WebsocketCommunicator(app_for(endpoint), "/g")
    await communicator.send_input({"type": "websocket.connect"})
    await communicator.send_input({"type": "websocket.disconnect", "code": 1006})  # the client gave up
    endpoint.gate.set()
    await communicator.wait(timeout=5)
    assert metric("nexios_compat_handshakes_abandoned_total") == abandoned + 1
    assert await ChannelBox.show_history("g") == []
    assert await MembershipService().count("g") == 0


class Chat(WebSocketEndpoint):
    encoding = "json"

    async def on_connect(self, ws: WebSocket) -> None:
        await ws.accept()
        await self.join_group("c")
        await ws.send_json({"ready": str(self.channel.id if self.channel else "")})

    async def on_receive(self, ws: WebSocket, data: typing.Any) -> None:
        await self.broadcast(data, "c", save_history=data.get("save", True))


class DatabaseDown:
    """Makes the stores raise what a stopped PostgreSQL raises, while ``down``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from nexios_compat.stores.history import DatabaseHistoryStore
        from nexios_compat.stores.membership import DatabaseMembershipStore

        self.down = False
        for cls, names in (
            (DatabaseHistoryStore, ("append", "last_seq", "head", "fetch", "read")),
            (DatabaseMembershipStore, ("add", "remove", "members", "count", "reconcile")),
        ):
            for name in names:
                monkeypatch.setattr(cls, name, self._guard(getattr(cls, name)))

    def _guard(self, fn: typing.Callable[..., typing.Any]) -> typing.Callable[..., typing.Any]:
        def guarded(*args: typing.Any, **kwargs: typing.Any) -> typing.Any:
            if self.down:
                raise OperationalError("connection refused")
            return fn(*args, **kwargs)

        return guarded


async def test_a_database_outage_keeps_sockets_open_and_membership_rows_follow_the_sockets(
    settings: typing.Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.NEXIOS_COMPAT = {"HISTORY_WRITE_TIMEOUT": 0.3, "HEARTBEAT_INTERVAL": 0.1}
    database = DatabaseDown(monkeypatch)
    app = app_for(Chat)
    stays = WebsocketCommunicator(app, "/g")
    assert (await stays.connect())[0]
    await stays.receive_json_from()
    leaves = WebsocketCommunicator(app, "/g")
    assert (await leaves.connect())[0]
    gone = uuid.UUID((await leaves.receive_json_from())["ready"])
    hub = await get_hub()
    failures = metric("nexios_compat_database_failures_total", op="presence_remove")

    database.down = True
    await leaves.disconnect()  # its row cannot be deleted now
    await until(lambda: gone not in hub.registry.members, "the channel to leave memory")
    assert metric("nexios_compat_database_failures_total", op="presence_remove") == failures + 1
    assert metric("nexios_compat_membership_dirty") == 1
    newcomer = WebsocketCommunicator(app, "/g")  # new connections keep working
    assert (await newcomer.connect())[0]
    await newcomer.receive_json_from()
    await stays.send_json_to({"save": False, "n": "unsaved"})
    for member in (stays, newcomer):
        assert await member.receive_json_from() == {"save": False, "n": "unsaved"}
    await stays.send_json_to({"n": "saved"})
    assert await stays.receive_json_from(timeout=5) == {"type": "error", "error": "history_unavailable"}
    assert metric("nexios_compat_history_unavailable_total") >= 1
    assert {len(await ChannelBox.group("c"))} == {2}  # presence from memory

    database.down = False
    members = MembershipService()
    await until(lambda: metric("nexios_compat_membership_dirty") == 0, "reconciliation")
    assert {m.channel_id for m in await members.members("c")} == set(hub.registry.members)
    assert gone not in {m.channel_id for m in await members.members("c")}
    await stays.send_json_to({"n": "after"})
    for member in (stays, newcomer):
        assert await member.receive_json_from(timeout=5) == {"n": "after"}
    assert current_hub() is hub
    for communicator in (stays, newcomer):
        await communicator.disconnect()


async def saving_handler(ws: WebSocket) -> None:
    """A function handler whose saved sends fail while the database is down; it catches some."""
    await ws.accept()
    channel = Channel(websocket=ws, payload_type=PayloadTypeEnum.JSON)
    await ChannelBox.add_channel_to_group(channel, "f")
    await ws.send_json({"ready": True})
    while True:
        data = await ws.receive_json()
        if not data.get("catch"):
            await ChannelBox.group_send("f", data, save_history=True)
            continue
        try:
            await ChannelBox.group_send("f", data, save_history=True)
        except HistoryUnavailable:
            await ws.send_json({"caught": True})


async def test_history_unavailable_in_a_function_handler_sends_the_error_frame_and_closes_1013(
    settings: typing.Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.NEXIOS_COMPAT = {"HISTORY_WRITE_TIMEOUT": 0.3, "HEARTBEAT_INTERVAL": 0.1}
    database = DatabaseDown(monkeypatch)
    app = get_application()
    app.add_ws_route(WebsocketRoute("/f", saving_handler))
    client = WebsocketCommunicator(app, "/f")
    assert (await client.connect())[0]
    assert await client.receive_json_from() == {"ready": True}
    hub = await get_hub()

    database.down = True
    await client.send_json_to({"catch": True, "n": 0})  # accepted before the writer knew
    await until(lambda: hub.writer.failing, "the writer to fail")
    await client.send_json_to({"catch": True, "n": 1})  # waits for its outcome; the handler catches it
    assert await client.receive_json_from(timeout=5) == {"caught": True}
    await client.send_json_to({"n": 2})  # not caught: escapes the handler
    assert await client.receive_json_from(timeout=5) == {"type": "error", "error": "history_unavailable"}
    assert await client.receive_output(timeout=5) == {
        "type": "websocket.close",
        "code": 1013,
        "reason": "History unavailable",
    }
    newcomer = WebsocketCommunicator(app, "/f")  # new connections keep working
    assert (await newcomer.connect())[0]
    assert await newcomer.receive_json_from() == {"ready": True}
    await newcomer.disconnect()
    await client.wait(timeout=5)


class Acker(WebSocketEndpoint):
    """Saves each frame to the room, then acknowledges it: the reply must not lie."""

    encoding = "json"

    async def on_connect(self, ws: WebSocket) -> None:
        await ws.accept()
        await self.join_group("g")

    async def on_receive(self, ws: WebSocket, data: typing.Any) -> None:
        await self.broadcast(data, "g", save_history=True)
        await ws.send_json({"ack": data["n"]})


async def test_a_reply_after_a_save_that_failed_later_raises_instead_of_acknowledging(
    settings: typing.Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.NEXIOS_COMPAT = {"HISTORY_WRITE_TIMEOUT": 0.3}
    database = DatabaseDown(monkeypatch)
    communicator = WebsocketCommunicator(app_for(Acker), "/g")
    assert (await communicator.connect())[0]
    # The writer has seen no failure yet: the save is accepted and the handler moves on
    # to its reply, which waits for the save, which fails after HISTORY_WRITE_TIMEOUT.
    database.down = True
    await communicator.send_json_to({"n": 1})
    assert await communicator.receive_from(timeout=5) == HistoryUnavailable.frame
    assert await communicator.receive_nothing(timeout=0.5)  # no {"ack": 1}, no second error frame
    database.down = False
    await communicator.send_json_to({"n": 2})
    assert await communicator.receive_json_from(timeout=5) == {"n": 2}
    assert await communicator.receive_json_from(timeout=5) == {"ack": 2}  # once only, then replies work
    await communicator.disconnect()


async def test_a_resume_the_database_cannot_answer_leaves_the_room_and_closes_1013(
    settings: typing.Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.NEXIOS_COMPAT = {}
    database = DatabaseDown(monkeypatch)
    app = app_for(Acker)
    watcher = WebsocketCommunicator(app, "/g")
    assert (await watcher.connect())[0]
    database.down = True
    # The client asks for what it missed; history cannot be read: staying in the room
    # would show it live messages after a gap it was promised it would not have.
    resuming = WebsocketCommunicator(app, "/g?since=0&epoch=")
    assert (await resuming.connect())[0]
    assert await resuming.receive_from(timeout=5) == HistoryUnavailable.frame
    assert (await resuming.receive_output(timeout=5))["code"] == 1013
    hub = current_hub()
    assert hub is not None
    await until(lambda: len(hub.registry.rooms.get("g", {})) == 1, "only the watcher in the room")
    database.down = False
    await watcher.disconnect()


async def test_room_limits_are_checked_against_local_members_while_the_database_is_down(
    settings: typing.Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.NEXIOS_COMPAT = {"MAX_MEMBERS_PER_ROOM": 2, "HISTORY_WRITE_TIMEOUT": 0.3}
    database = DatabaseDown(monkeypatch)
    app = app_for(Acker)
    database.down = True  # the cluster-wide count cannot be read: joins go on
    first, second, third = (WebsocketCommunicator(app, "/g") for _ in range(3))
    for communicator in (first, second):
        assert (await communicator.connect())[0]
        await communicator.send_json_to({"n": 0})  # a reply proves the join went through
        assert await communicator.receive_from(timeout=5) == HistoryUnavailable.frame
    assert (await third.connect())[0]
    assert (await third.receive_output(timeout=5))["code"] == 4409  # full, by this process's count
    database.down = False
    for communicator in (first, second):
        await communicator.disconnect()
