"""Nexios's pluggable history: ``ChannelBox.set_history_manager`` and the three managers."""

from __future__ import annotations

import typing
from collections.abc import Iterator

import pytest
from channels.testing import WebsocketCommunicator

from nexios_compat import NexiosApp, WebSocket
from nexios_compat.models import Message
from nexios_compat.websockets import (
    BaseHistoryManager,
    Channel,
    ChannelBox,
    InMemoryHistoryManager,
    NoOpHistoryManager,
)
from nexios_compat.websockets.history import get_history_manager
from nexios_compat.websockets.utils import ChannelMessageDC

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("hub_cleanup")]


@pytest.fixture(autouse=True)
def database_history_afterwards() -> Iterator[None]:
    yield
    ChannelBox.set_history_manager(None)


class ListManager(BaseHistoryManager):
    """A site's own store, as Nexios users write them."""

    def __init__(self) -> None:
        self.saved: list[tuple[str, ChannelMessageDC]] = []

    async def save_message(self, group_name: str, message: ChannelMessageDC) -> None:
        self.saved.append((group_name, message))

    async def get_history(self, group_name: str | None = None) -> typing.Any:
        return [m for g, m in self.saved if g == group_name]

    async def flush_history(self, group_name: str | None = None) -> None:
        self.saved = [(g, m) for g, m in self.saved if group_name and g != group_name]


def room_app() -> NexiosApp:
    app = NexiosApp()

    @app.ws_route("/room/{name}")
    async def room(ws: WebSocket) -> None:
        await ws.accept()
        await ChannelBox.add_channel_to_group(Channel(ws, "json"), ws.path_params["name"])
        async for data in ws.iter_json():
            await ChannelBox.group_send(ws.path_params["name"], data, save_history=True)

    return app


async def test_a_plugged_manager_saves_lists_and_flushes_instead_of_the_database() -> None:
    manager = ListManager()
    ChannelBox.set_history_manager(manager)
    communicator = WebsocketCommunicator(room_app(), "/room/lobby")
    assert (await communicator.connect())[0]
    await communicator.send_json_to({"text": "hi"})
    assert await communicator.receive_json_from() == {"text": "hi"}  # delivered, no seq envelope
    [(group, message)] = manager.saved
    assert (group, message.payload) == ("lobby", {"text": "hi"})
    assert [m.payload for m in await ChannelBox.show_history("lobby")] == [{"text": "hi"}]
    assert await Message.objects.acount() == 0
    await ChannelBox.flush_history("lobby")
    assert manager.saved == []
    await communicator.disconnect()


async def test_without_a_manager_history_stays_in_the_database() -> None:
    assert get_history_manager() is None
    await ChannelBox.group_send("quiet", {"n": 1}, save_history=True)
    assert await Message.objects.acount() == 1
    [saved] = await ChannelBox.show_history("quiet")
    assert saved.seq == 1


async def test_in_memory_manager_keeps_groups_apart_and_clears_a_group_that_outgrows_it() -> None:
    manager = InMemoryHistoryManager(history_size=120)
    ChannelBox.set_history_manager(manager)
    await ChannelBox.group_send("a", "one", save_history=True)
    await ChannelBox.group_send("b", "two", save_history=True)
    assert [m.payload for m in await ChannelBox.show_history("a")] == ["one"]
    assert set(typing.cast(dict[str, typing.Any], await ChannelBox.show_history())) == {"a", "b"}
    for n in range(20):
        await manager.save_message("a", ChannelMessageDC(payload=str(n)))
    assert len(typing.cast(list[typing.Any], await ChannelBox.show_history("a"))) < 20
    await ChannelBox.flush_history("b")
    assert await ChannelBox.show_history("b") == []
    await ChannelBox.flush_history()
    assert await ChannelBox.show_history() == {}


async def test_noop_manager_saves_nothing() -> None:
    ChannelBox.set_history_manager(NoOpHistoryManager())
    await ChannelBox.group_send("a", {"x": 1}, save_history=True)
    assert await ChannelBox.show_history("a") == []
    assert await ChannelBox.show_history() == {}
    assert await Message.objects.acount() == 0


def test_only_history_managers_plug_in() -> None:
    with pytest.raises(TypeError):
        ChannelBox.set_history_manager(object())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        BaseHistoryManager()  # type: ignore[abstract]
