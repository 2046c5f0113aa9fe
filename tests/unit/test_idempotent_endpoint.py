"""Idempotent sends through an endpoint: the ack frame, resends across connections, Nexios apps unchanged."""

from __future__ import annotations

import json
import typing

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from nexios_compat import WebSocket, get_application
from nexios_compat.models import Message
from nexios_compat.websockets import WebSocketEndpoint
from nexios_compat.websockets.channels import ChannelBox

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("hub_cleanup")]


class Room(WebSocketEndpoint):
    """Saves what arrives, passing the client's ``id`` along."""

    encoding = "json"
    ids = True

    async def on_connect(self, ws: WebSocket) -> None:
        await ws.accept()
        await self.join_group("r")

    async def on_receive(self, ws: WebSocket, data: typing.Any) -> None:
        client_id = data.pop("id", None) if self.ids else None
        await self.broadcast(data, "r", save_history=True, client_id=client_id)


class NexiosRoom(Room):
    """A Nexios port: it knows nothing of ids."""

    ids = False


def app_for(endpoint: type[WebSocketEndpoint]) -> typing.Any:
    app = get_application()
    app.add_ws_route(endpoint.as_route("/r"))
    return app


async def connect(app: typing.Any, query: str = "") -> WebsocketCommunicator:
    client = WebsocketCommunicator(app, f"/r?{query}")
    connected, _ = await client.connect()
    assert connected
    return client


@sync_to_async
def rows() -> list[tuple[int, str | None]]:
    return list(Message.objects.order_by("seq").values_list("seq", "text"))


async def test_a_send_with_an_id_is_acked_with_its_seq_and_epoch_after_its_echo() -> None:
    app = app_for(Room)
    sender = await connect(app, "envelope=1&epoch=&client=tab1")
    await sender.send_json_to({"id": "m1", "text": "hi"})
    echo = await sender.receive_json_from()
    assert echo["seq"] == 1 and echo["payload"] == {"text": "hi"}
    assert await sender.receive_json_from() == {
        "type": "ack",
        "id": "m1",
        "room": "r",
        "seq": 1,
        "epoch": echo["epoch"],
    }
    await sender.disconnect()


async def test_a_resend_on_a_new_connection_is_acked_with_the_first_seq_and_sent_to_no_one() -> None:
    app = app_for(Room)
    listener = await connect(app)
    first = await connect(app, "envelope=1&client=tab1")
    await first.send_json_to({"id": "m1", "text": "one"})
    assert (await first.receive_json_from())["seq"] == 1
    ack_epoch = (await first.receive_json_from())["epoch"]
    await first.disconnect()
    # The ack was lost with the connection: the client sends m1 again, then m2.
    again = await connect(app, "envelope=1&client=tab1")
    await again.send_json_to({"id": "m1", "text": "one"})
    await again.send_json_to({"id": "m2", "text": "two"})
    ack = await again.receive_json_from()
    assert (ack["type"], ack["id"], ack["seq"], ack["epoch"]) == ("ack", "m1", 1, ack_epoch)
    assert (await again.receive_json_from())["payload"] == {"text": "two"}
    assert (await again.receive_json_from())["seq"] == 2
    # Everyone else got "one" once: the next broadcast after it is "two".
    assert await listener.receive_json_from() == {"text": "one"}
    assert await listener.receive_json_from() == {"text": "two"}
    assert (await rows()) == [(1, '{"text":"one"}'), (2, '{"text":"two"}')]
    for client in (listener, again):
        await client.disconnect()


async def test_ids_are_per_client_so_anonymous_clients_never_collide() -> None:
    app = app_for(Room)
    one = await connect(app, "client=tab1")
    two = await connect(app, "client=tab2")
    await one.send_json_to({"id": "m1", "text": "from one"})
    assert await one.receive_json_from() == {"text": "from one"}
    assert (await one.receive_json_from())["seq"] == 1
    await two.send_json_to({"id": "m1", "text": "from two"})
    assert (await two.receive_json_from()) == {"text": "from one"}
    assert (await two.receive_json_from()) == {"text": "from two"}
    assert (await two.receive_json_from())["seq"] == 2
    assert [text for _, text in (await rows())] == ['{"text":"from one"}', '{"text":"from two"}']
    for client in (one, two):
        await client.disconnect()


async def test_a_nexios_app_that_passes_no_id_sees_no_new_frame_and_stores_every_send() -> None:
    app = app_for(NexiosRoom)
    client = await connect(app, "envelope=1&client=tab1")
    for _ in range(2):
        await client.send_json_to({"id": "m1", "text": "same"})
    await client.send_json_to({"text": "last"})
    # Had an ack been sent, it would come between the echoes.
    frames = [await client.receive_json_from() for _ in range(3)]
    assert [(f["seq"], f["payload"]) for f in frames] == [
        (1, {"id": "m1", "text": "same"}),
        (2, {"id": "m1", "text": "same"}),
        (3, {"text": "last"}),
    ]
    assert len(await rows()) == 3
    await client.disconnect()


async def test_server_code_can_send_idempotently_too() -> None:
    for _ in range(2):
        await ChannelBox.group_send("s", {"n": 1}, save_history=True, client_id="job-1")
    await ChannelBox.group_send("s", {"n": 2}, save_history=True, client_id="job-2")
    history = await ChannelBox.history_since("s")
    assert [(m.seq, m.payload) for m in history] == [(1, {"n": 1}), (2, {"n": 2})]


async def test_a_client_id_that_is_not_a_short_string_is_refused() -> None:
    with pytest.raises(ValueError, match="client_id"):
        await ChannelBox.group_send("s", {}, save_history=True, client_id="x" * 65)


async def test_a_retry_from_a_process_without_a_hub_is_not_published_again() -> None:
    # A management command or a worker: no hub in its event loop, so the message goes to
    # the layer directly. Its retry (same id, same sender) is stored once and not re-sent.
    from nexios_compat.engine import current_hub
    from nexios_compat.engine.layer import get_layer
    from nexios_compat.rooms import layer_group

    assert current_hub() is None
    layer = get_layer()
    listener = await layer.new_channel()
    await layer.group_add(layer_group("jobs"), listener)
    for _ in range(3):
        await ChannelBox.group_send("jobs", {"done": 1}, save_history=True, client_id="job-1")
    await ChannelBox.group_send("jobs", {"done": 2}, save_history=True, client_id="job-2")
    received = [await layer.receive(listener), await layer.receive(listener)]
    payloads = [json.loads(item[1]) for message in received for item in message["items"]]
    assert payloads == [{"done": 1}, {"done": 2}]
    saved = [(seq, json.loads(text or "")) for seq, text in await rows()]
    assert saved == [(1, {"done": 1}), (2, {"done": 2})]
    await layer.group_discard(layer_group("jobs"), listener)
