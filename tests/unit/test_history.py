"""History: saved before sent, numbered per room, retention, batching and resume (in one process)."""

from __future__ import annotations

import asyncio
import datetime
import io
import threading
import typing
import uuid

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import InMemoryChannelLayer
from channels.testing import WebsocketCommunicator
from django.core.management import call_command
from django.utils import timezone

from nexios_compat import WebSocket, get_application
from nexios_compat.conf import CONFIG_DEFAULTS
from nexios_compat.encoding import dumps
from nexios_compat.engine import get_hub, get_layer, publish_remote
from nexios_compat.models import Message, Room
from nexios_compat.stores.db import run_db
from nexios_compat.stores.history import DatabaseHistoryStore, PendingMessage
from nexios_compat.websockets import WebSocketEndpoint
from nexios_compat.websockets.channels import Channel, ChannelBox, GroupSendStatusEnum
from nexios_compat.websockets.utils import ChannelMessageDC
from tests.support.helpers import join, pending, room_app, until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("hub_cleanup")]


def save(room: str, *payloads: typing.Any) -> list[int]:
    """Store payloads straight through the store (no hub); return their seqs."""
    return [saved.seq for saved in DatabaseHistoryStore().append([pending(room, p) for p in payloads])]


# Saving ---------------------------------------------------------------------


class GatedStore(DatabaseHistoryStore):
    """Holds ``append`` until the test opens the gate."""

    entered = threading.Event()
    gate = threading.Event()

    def append(self, messages: list[PendingMessage]) -> typing.Any:
        GatedStore.entered.set()
        assert GatedStore.gate.wait(10), "the test never opened the gate"
        return super().append(messages)


async def test_group_send_saves_before_it_delivers(settings: typing.Any) -> None:
    settings.NEXIOS_COMPAT = {
        "HISTORY_STORE": "tests.unit.test_history.GatedStore",
        "HISTORY_WAIT_FOR_COMMIT": True,
    }
    GatedStore.entered.clear()
    GatedStore.gate.clear()
    listener, _ = await join(room_app(), "/room/g")
    sending = asyncio.create_task(ChannelBox.group_send("g", {"x": 1}, save_history=True))
    assert await asyncio.to_thread(GatedStore.entered.wait, 5)
    # The write is in progress: nothing may reach the socket, and the sender still waits.
    assert await listener.receive_nothing(timeout=0.3)
    assert not sending.done()
    GatedStore.gate.set()
    assert await sending is GroupSendStatusEnum.GROUP_SEND
    assert await listener.receive_json_from() == {"x": 1}
    assert [m.payload for m in await ChannelBox.show_history("g")] == [{"x": 1}]
    await listener.disconnect()


async def test_pipelined_group_send_returns_at_once_yet_delivers_only_after_the_commit(
    settings: typing.Any,
) -> None:
    settings.NEXIOS_COMPAT = {"HISTORY_STORE": "tests.unit.test_history.GatedStore"}
    GatedStore.entered.clear()
    GatedStore.gate.clear()
    listener, _ = await join(room_app(), "/room/g")
    # Accepted in order while the first write is held: the sender is not kept waiting.
    for i in range(3):
        assert await ChannelBox.group_send("g", {"x": i}, save_history=True) is GroupSendStatusEnum.GROUP_SEND
    assert await asyncio.to_thread(GatedStore.entered.wait, 5)
    assert await listener.receive_nothing(timeout=0.3)
    GatedStore.gate.set()
    assert [await listener.receive_json_from() for _ in range(3)] == [{"x": 0}, {"x": 1}, {"x": 2}]
    # Read your writes: history read through ChannelBox waits for what was accepted.
    assert [m.payload for m in await ChannelBox.show_history("g")] == [{"x": 0}, {"x": 1}, {"x": 2}]
    await listener.disconnect()


async def test_an_unsaved_send_does_not_overtake_saved_ones_waiting_to_be_stored(
    settings: typing.Any,
) -> None:
    settings.NEXIOS_COMPAT = {"HISTORY_STORE": "tests.unit.test_history.GatedStore"}
    GatedStore.entered.clear()
    GatedStore.gate.clear()
    listener, _ = await join(room_app(), "/room/g")
    await ChannelBox.group_send("g", {"saved": 1}, save_history=True)
    await ChannelBox.group_send("g", {"unsaved": 2})
    await ChannelBox.group_send("other", {"elsewhere": 3})  # another room is not held back
    assert await asyncio.to_thread(GatedStore.entered.wait, 5)
    assert await listener.receive_nothing(timeout=0.3)
    GatedStore.gate.set()
    assert [await listener.receive_json_from() for _ in range(2)] == [{"saved": 1}, {"unsaved": 2}]
    await listener.disconnect()


async def test_a_handler_s_reply_and_close_never_overtake_its_own_saved_broadcast(
    settings: typing.Any,
) -> None:
    settings.NEXIOS_COMPAT = {"HISTORY_STORE": "tests.unit.test_history.GatedStore"}
    GatedStore.entered.clear()
    GatedStore.gate.clear()
    app = get_application()

    @app.websocket("/echo/{name}")
    async def echo(ws: WebSocket, name: str) -> None:
        await ws.accept()
        channel = Channel(ws, "json")
        await ChannelBox.add_channel_to_group(channel, name)
        await ws.send_json({"joined": str(channel.id)})
        data = await ws.receive_json()
        await ChannelBox.group_send(name, data, save_history=True)  # accepted, not yet stored
        await ws.send_json({"reply": True})  # waits for the broadcast to reach this socket
        await ws.close(4000)

    client, _ = await join(app, "/echo/o")
    await client.send_json_to({"said": 1})
    assert await asyncio.to_thread(GatedStore.entered.wait, 5)
    assert await client.receive_nothing(timeout=0.3)  # the reply waits behind the unsaved broadcast
    GatedStore.gate.set()
    assert await client.receive_json_from() == {"said": 1}
    assert await client.receive_json_from() == {"reply": True}
    assert (await client.receive_output())["type"] == "websocket.close"


async def test_each_saved_message_gets_the_next_seq_of_its_room() -> None:
    app = room_app()
    speaker, _ = await join(app, "/room/a")
    for i in range(3):
        await speaker.send_json_to({"i": i})
        await speaker.receive_json_from()
        await ChannelBox.group_send("b", {"b": i}, save_history=True)
    await ChannelBox.group_send("a", {"unsaved": True})
    await ChannelBox.group_send("a", {"i": 3}, save_history=True)
    history = await ChannelBox.show_history("a")
    assert [(m.seq, m.payload) for m in history] == [
        (1, {"i": 0}),
        (2, {"i": 1}),
        (3, {"i": 2}),
        (4, {"i": 3}),
    ]
    assert [m.seq for m in await ChannelBox.show_history("b")] == [1, 2, 3]
    channel_ids = {m.sender for m in history[:3]}
    assert len(channel_ids) == 1 and isinstance(channel_ids.pop(), uuid.UUID)
    assert history[3].sender is None
    await speaker.disconnect()


PAYLOADS: list[typing.Any] = [
    {"z": 1, "a": {"y": [1, 2.5, None, True], "b": "é ☕ 😀"}, "m": -0.1},
    "plain text, not JSON: {",
    "",
    b"\x00\xff\xfe binary \x80",
    b"",
    [3, 2, 1],
    "🎉 unicode text",
    0.1 + 0.2,
]


async def test_show_history_round_trips_payloads_exactly_oldest_first() -> None:
    before = timezone.now()
    for payload in PAYLOADS:
        await ChannelBox.group_send("kinds", payload, save_history=True)
    history = await ChannelBox.show_history("kinds")
    assert all(isinstance(m, ChannelMessageDC) for m in history)
    assert [m.payload for m in history] == PAYLOADS
    assert [type(m.payload) for m in history] == [type(p) for p in PAYLOADS]
    assert list(history[0].payload) == ["z", "a", "m"]
    assert list(history[0].payload["a"]) == ["y", "b"]
    assert [m.seq for m in history] == list(range(1, len(PAYLOADS) + 1))
    assert len({m.uuid for m in history}) == len(PAYLOADS)
    assert all(m.room == "kinds" for m in history)
    assert all(before <= m.created <= timezone.now() for m in history)
    assert [m.created for m in history] == sorted(m.created for m in history)
    sizes = await sync_to_async(
        lambda: list(Message.objects.order_by("seq").values_list("size", flat=True))
    )()
    assert sizes == [
        len(p) if isinstance(p, bytes) else len((p if isinstance(p, str) else dumps(p)).encode())
        for p in PAYLOADS
    ]


async def test_show_history_without_a_name_returns_every_room() -> None:
    await ChannelBox.group_send("one", "first", save_history=True)
    await ChannelBox.group_send("two", {"n": 2}, save_history=True)
    await ChannelBox.group_send("one", b"third", save_history=True)
    everything = await ChannelBox.show_history()
    assert isinstance(everything, dict)
    assert {room: [m.payload for m in msgs] for room, msgs in everything.items()} == {
        "one": ["first", b"third"],
        "two": [{"n": 2}],
    }
    assert await ChannelBox.show_history("nobody-here") == []


async def test_flush_history_of_one_room_or_all_and_numbering_continues() -> None:
    for room in ("keep", "drop"):
        for i in range(3):
            await ChannelBox.group_send(room, {"i": i}, save_history=True)
    assert await ChannelBox.flush_history("drop") == 3
    assert await ChannelBox.show_history("drop") == []
    assert len(await ChannelBox.show_history("keep")) == 3
    assert await ChannelBox.flush_history() == 3
    assert await ChannelBox.show_history() == {}
    # Numbers are never reused, so a client resuming after seq 3 still gets what follows.
    await ChannelBox.group_send("keep", {"after": "flush"}, save_history=True)
    assert [m.seq for m in await ChannelBox.show_history("keep")] == [4]


async def test_history_since_with_limit() -> None:
    await sync_to_async(save)("s", *range(10))
    assert [m.payload for m in await ChannelBox.history_since("s", 6)] == [6, 7, 8, 9]
    assert [m.seq for m in await ChannelBox.history_since("s", 0, limit=3)] == [8, 9, 10]


async def test_saving_from_outside_a_server_process_uses_no_hub() -> None:
    # What a management command or a WSGI view does: no hub in this loop.
    assert await ChannelBox.group_send("offline", {"x": 1}, save_history=True) is (
        GroupSendStatusEnum.NO_SUCH_GROUP
    )
    assert [m.seq for m in await ChannelBox.show_history("offline")] == [1]


async def test_saving_from_sync_code_on_the_orm_thread_does_not_deadlock() -> None:
    # E.g. a post_save handler calling async_to_sync(group_send) while a consumer saves a
    # model with database_sync_to_async: the sync code holds the thread the writer needs.
    listener, _ = await join(room_app(), "/room/sync")

    def sync_code() -> GroupSendStatusEnum:
        return async_to_sync(ChannelBox.group_send)("sync", {"from": "sync"}, save_history=True)

    assert await asyncio.wait_for(run_db(sync_code), 10) is GroupSendStatusEnum.GROUP_SEND
    assert await listener.receive_json_from() == {"from": "sync"}
    assert [m.seq for m in await ChannelBox.show_history("sync")] == [1]
    await listener.disconnect()


# Batching ---------------------------------------------------------------------


class CountingStore(DatabaseHistoryStore):
    """Records the size of every ``append`` (one transaction each)."""

    batches: typing.ClassVar[list[int]] = []

    def append(self, messages: list[PendingMessage]) -> typing.Any:
        CountingStore.batches.append(len(messages))
        return super().append(messages)


@pytest.mark.parametrize("batch_size", [500, 8])
async def test_concurrent_saves_share_transactions_and_arrive_in_seq_order(
    settings: typing.Any, batch_size: int
) -> None:
    settings.NEXIOS_COMPAT = {
        "HISTORY_STORE": "tests.unit.test_history.CountingStore",
        "HISTORY_BATCH_SIZE": batch_size,
        # Each sender waits for its commit, so that all 60 are stored when gather returns.
        "HISTORY_WAIT_FOR_COMMIT": True,
    }
    CountingStore.batches.clear()
    listener, _ = await join(room_app(), "/room/busy?envelope=1")
    total = 60
    statuses = await asyncio.gather(
        *(ChannelBox.group_send("busy", {"i": i}, save_history=True) for i in range(total))
    )
    assert set(statuses) == {GroupSendStatusEnum.GROUP_SEND}
    assert sum(CountingStore.batches) == total
    assert len(CountingStore.batches) < total
    assert max(CountingStore.batches) <= batch_size
    history = await ChannelBox.show_history("busy")
    assert [m.seq for m in history] == list(range(1, total + 1))
    assert sorted(m.payload["i"] for m in history) == list(range(total))
    received = [await listener.receive_json_from(timeout=5) for _ in range(total)]
    assert [frame["seq"] for frame in received] == list(range(1, total + 1))
    assert [frame["payload"] for frame in received] == [m.payload for m in history]
    await listener.disconnect()


async def test_each_senders_messages_keep_their_order() -> None:
    app = room_app()
    senders = [(await join(app, "/room/order"))[0] for _ in range(4)]
    per_sender = 15

    async def talk(index: int, communicator: WebsocketCommunicator) -> None:
        for i in range(per_sender):
            await communicator.send_json_to({"who": index, "i": i})
            await asyncio.sleep(0)

    await asyncio.gather(*(talk(index, c) for index, c in enumerate(senders)))
    expected = len(senders) * per_sender
    for communicator in senders:  # every member gets every message, in seq order
        frames = [await communicator.receive_json_from(timeout=5) for _ in range(expected)]
        for index in range(len(senders)):
            assert [f["i"] for f in frames if f["who"] == index] == list(range(per_sender))
    history = await ChannelBox.show_history("order")
    assert [m.seq for m in history] == list(range(1, expected + 1))
    for index in range(len(senders)):
        assert [m.payload["i"] for m in history if m.payload["who"] == index] == list(range(per_sender))
    for communicator in senders:
        await communicator.disconnect()


# Retention --------------------------------------------------------------------


def last_seq(room: str) -> int:
    return Room.objects.filter(name=room).values_list("last_seq", flat=True).first() or 0


def remaining(room: str) -> list[int]:
    return list(Message.objects.filter(room__name=room).order_by("seq").values_list("seq", flat=True))


def age(room: str, seqs: typing.Iterable[int], seconds: float) -> None:
    Message.objects.filter(room__name=room, seq__in=list(seqs)).update(
        created=timezone.now() - datetime.timedelta(seconds=seconds)
    )


def test_retention_defaults() -> None:
    assert CONFIG_DEFAULTS["HISTORY_MAX_MESSAGES"] == 1000
    assert CONFIG_DEFAULTS["HISTORY_MAX_AGE"] is None
    save("big", *range(1003))
    save("small", "only")
    assert DatabaseHistoryStore().prune() == 3
    assert remaining("big") == list(range(4, 1004))
    assert remaining("small") == [1]


def test_max_messages_drops_the_oldest(settings: typing.Any) -> None:
    settings.NEXIOS_COMPAT = {"HISTORY_MAX_MESSAGES": 3}
    save("r", *range(10))
    assert DatabaseHistoryStore().prune() == 7
    assert remaining("r") == [8, 9, 10]
    assert DatabaseHistoryStore().prune() == 0


def test_room_overrides_beat_the_settings(settings: typing.Any) -> None:
    settings.NEXIOS_COMPAT = {"HISTORY_MAX_MESSAGES": 5, "HISTORY_MAX_AGE": None}
    save("strict", *range(8))
    save("default", *range(8))
    save("roomy", *range(8))
    save("young", *range(8))
    Room.objects.filter(name="strict").update(max_messages=2)
    Room.objects.filter(name="roomy").update(max_messages=100)
    Room.objects.filter(name="young").update(max_age=60)
    age("young", range(1, 7), seconds=120)
    DatabaseHistoryStore().prune()
    assert remaining("strict") == [7, 8]
    assert remaining("default") == [4, 5, 6, 7, 8]
    assert remaining("roomy") == list(range(1, 9))
    assert remaining("young") == [7, 8]


def test_max_age_drops_old_messages(settings: typing.Any) -> None:
    settings.NEXIOS_COMPAT = {"HISTORY_MAX_AGE": 60}
    save("r", *range(5))
    age("r", [1, 2, 3], seconds=61)
    assert DatabaseHistoryStore().prune() == 3
    assert remaining("r") == [4, 5]


def test_retention_never_wipes_a_room(settings: typing.Any, monkeypatch: pytest.MonkeyPatch) -> None:
    settings.NEXIOS_COMPAT = {"HISTORY_MAX_MESSAGES": 0, "HISTORY_MAX_AGE": 1}
    monkeypatch.setenv("CHANNEL_BOX_HISTORY_SIZE", "1")
    save("r", "aaaa", "bbbb", "cccc")
    age("r", [1, 2, 3], seconds=3600)
    assert DatabaseHistoryStore().prune() == 2
    assert remaining("r") == [3]


def test_history_size_env_bounds_a_rooms_payload_bytes(
    settings: typing.Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.NEXIOS_COMPAT = {"HISTORY_MAX_MESSAGES": None}
    # Sizes: 10 bytes, 10 bytes, {"k":"é"} is 10 bytes of UTF-8, "éé" is 4, b"12345" is 5.
    save("r", "0123456789", b"0123456789", {"k": "é"}, "éé", b"12345")
    monkeypatch.setenv("CHANNEL_BOX_HISTORY_SIZE", "19")
    assert DatabaseHistoryStore().prune() == 2
    assert remaining("r") == [3, 4, 5]  # 10 + 4 + 5 = 19 bytes
    monkeypatch.setenv("CHANNEL_BOX_HISTORY_SIZE", "18")
    assert DatabaseHistoryStore().prune() == 1
    assert remaining("r") == [4, 5]
    monkeypatch.delenv("CHANNEL_BOX_HISTORY_SIZE")
    assert DatabaseHistoryStore().prune() == 0


def test_prune_history_command_prints_how_many_it_deleted(settings: typing.Any) -> None:
    settings.NEXIOS_COMPAT = {"HISTORY_MAX_MESSAGES": 2}
    save("a", *range(5))
    save("b", *range(3))
    out = io.StringIO()
    call_command("prune_history", stdout=out)
    assert out.getvalue().strip() == "Deleted 4 saved messages."
    out = io.StringIO()
    call_command("prune_history", stdout=out)
    assert out.getvalue().strip() == "Deleted 0 saved messages."
    assert (remaining("a"), remaining("b")) == ([4, 5], [2, 3])


async def test_prune_history_from_channel_box(settings: typing.Any) -> None:
    settings.NEXIOS_COMPAT = {"HISTORY_MAX_MESSAGES": 1}
    await sync_to_async(save)("r", 1, 2, 3)
    assert await ChannelBox.prune_history() == 2
    assert [m.payload for m in await ChannelBox.show_history("r")] == [3]


async def test_server_processes_prune_periodically(settings: typing.Any) -> None:
    settings.NEXIOS_COMPAT = {
        "HISTORY_MAX_MESSAGES": 2,
        "HISTORY_PRUNE_INTERVAL": 0.1,
        "EXPIRE_SWEEP_INTERVAL": 0.05,
    }
    await sync_to_async(save)("r", *range(6))
    await get_hub()

    async def pruned() -> bool:
        return await sync_to_async(remaining)("r") == [5, 6]

    await until(pruned, "the periodic prune to leave seqs 5 and 6", timeout=5)
    assert await sync_to_async(remaining)("r") == [5, 6]


# Resume -----------------------------------------------------------------------


async def test_since_replays_later_saved_messages_then_live_ones() -> None:
    await sync_to_async(save)("resume", *({"n": n} for n in range(1, 6)))
    client, replayed = await join(room_app(), "/room/resume?since=2&envelope=1")
    assert replayed == [{"room": "resume", "seq": s, "payload": {"n": s}} for s in (3, 4, 5)]
    await ChannelBox.group_send("resume", {"n": 6}, save_history=True)
    await ChannelBox.group_send("resume", {"unsaved": True})
    assert await client.receive_json_from() == {"room": "resume", "seq": 6, "payload": {"n": 6}}
    assert await client.receive_json_from() == {"room": "resume", "seq": None, "payload": {"unsaved": True}}
    # Without ?since= nothing is replayed; without ?envelope=1 payloads arrive bare.
    plain, replayed = await join(room_app(), "/room/resume")
    assert replayed == []
    ahead, replayed = await join(room_app(), "/room/resume?since=99")
    assert replayed == []
    await ChannelBox.group_send("resume", "text", save_history=True)
    assert await plain.receive_json_from() == "text"
    for communicator in (client, plain, ahead):
        await communicator.disconnect()


async def test_function_handlers_resume_with_add_channel_to_group_since() -> None:
    await sync_to_async(save)("fn", "a", "b", "c", b"\x01")
    app = get_application()

    @app.websocket("/fn")
    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        channel = Channel(ws, "text")
        await ChannelBox.add_channel_to_group(channel, "fn", since=int(ws.query_params["last"]))
        await ws.receive_text()

    communicator = WebsocketCommunicator(app, "/fn?last=1")
    assert (await communicator.connect())[0]
    assert [await communicator.receive_from() for _ in range(3)] == ["b", "c", "\x01"]
    await communicator.disconnect()


class ResumingRoom(WebSocketEndpoint):
    encoding = "json"

    async def on_connect(self, ws: WebSocket) -> None:
        await ws.accept()
        await self.join_group("endpoint")
        await ws.send_json({"joined": "endpoint", "resume_from": self.resume_from})


async def test_endpoints_resume_from_the_since_query_parameter() -> None:
    await sync_to_async(save)("endpoint", 1, 2, 3)
    app = get_application()
    app.add_ws_route(ResumingRoom.as_route("/e"))
    communicator, replayed = await join(app, "/e?since=1")
    assert replayed == [2, 3]
    await communicator.disconnect()


class SlowFetchStore(DatabaseHistoryStore):
    """Makes every replay slow, so live messages pile up while it runs."""

    fetched_up_to: typing.ClassVar[list[int]] = []

    def fetch(self, room: str, since: int | None = None, limit: int | None = None) -> list[ChannelMessageDC]:
        threading.Event().wait(0.2)
        messages = super().fetch(room, since, limit)
        SlowFetchStore.fetched_up_to.append(messages[-1].seq or 0 if messages else since or 0)
        threading.Event().wait(0.2)
        return messages


async def test_resume_while_messages_keep_arriving_has_no_gap_and_no_duplicate(settings: typing.Any) -> None:
    settings.NEXIOS_COMPAT = {"HISTORY_STORE": "tests.unit.test_history.SlowFetchStore"}
    SlowFetchStore.fetched_up_to.clear()
    app = room_app()
    hammers = [(await join(app, "/room/busy"))[0] for _ in range(3)]
    stop = asyncio.Event()
    sent = 0

    async def hammer(communicator: WebsocketCommunicator) -> None:
        nonlocal sent
        while not stop.is_set():
            await communicator.send_json_to({"n": sent})
            sent += 1
            await asyncio.sleep(0.002)

    tasks = [asyncio.create_task(hammer(c)) for c in hammers]

    async def twenty_saved() -> bool:
        return await sync_to_async(last_seq)("busy") >= 20

    await until(twenty_saved, "20 messages to be saved", poll=0.01)
    since = 10
    resumer, replayed = await join(app, f"/room/busy?since={since}&envelope=1")
    seqs = [frame["seq"] for frame in replayed]
    # Keep hammering well past the replay, then stop and wait for the last saved message.
    while len(seqs) < 60:
        seqs.append((await resumer.receive_json_from(timeout=5))["seq"])
    stop.set()
    await asyncio.gather(*tasks)
    for communicator in hammers:
        await communicator.disconnect()
    last = await sync_to_async(last_seq)("busy")
    while seqs[-1] < last:
        seqs.append((await resumer.receive_json_from(timeout=5))["seq"])
    assert seqs == list(range(since + 1, last + 1))
    assert await resumer.receive_nothing(timeout=0.2)
    # The replay really overlapped live traffic: messages were saved after it read history.
    assert SlowFetchStore.fetched_up_to[-1] < last - 10
    await resumer.disconnect()


class OtherProcessStore(DatabaseHistoryStore):
    """While a replay reads history, another "process" saves and publishes more messages.

    The other process is a thread with its own database connection that publishes
    on the layer the way another server's hub would, in ``publish_order``.
    """

    loop: asyncio.AbstractEventLoop
    publish_order: typing.ClassVar[list[int]] = []

    def fetch(self, room: str, since: int | None = None, limit: int | None = None) -> list[ChannelMessageDC]:
        messages = super().fetch(room, since, limit)
        if since is not None:
            worker = threading.Thread(target=self._elsewhere, args=(room,))
            worker.start()
            worker.join()
        return messages

    def _elsewhere(self, room: str) -> None:
        from django.db import connection

        from nexios_compat.engine import publish_remote

        batch = [pending(room, {"elsewhere": i}) for i in range(len(self.publish_order))]
        saved = DatabaseHistoryStore().append(batch)
        connection.close()
        for index in self.publish_order:
            asyncio.run_coroutine_threadsafe(publish_remote(batch[index], saved[index]), self.loop).result(5)


@pytest.mark.parametrize(
    "publish_order", [[0, 1, 2], [1, 0, 2], [2, 1, 0]], ids=["in-order", "swapped", "reversed"]
)
async def test_messages_saved_elsewhere_during_a_replay_are_delivered_once(
    settings: typing.Any, publish_order: list[int]
) -> None:
    settings.NEXIOS_COMPAT = {"HISTORY_STORE": "tests.unit.test_history.OtherProcessStore"}
    OtherProcessStore.loop = asyncio.get_running_loop()
    OtherProcessStore.publish_order = publish_order
    await sync_to_async(save)("x", *range(5))
    client, replayed = await join(room_app(), "/room/x?since=2&envelope=1")
    seqs = [frame["seq"] for frame in replayed]
    assert seqs[:3] == [3, 4, 5]  # what the replay read; 6, 7 and 8 were saved after it
    while len(seqs) < 6:
        seqs.append((await client.receive_json_from(timeout=5))["seq"])
    # Whatever order the other process published them in: each once, in seq order.
    assert seqs == [3, 4, 5, 6, 7, 8]
    assert await client.receive_nothing(timeout=0.2)
    await client.disconnect()


def test_last_seq_survives_flush_and_prune(settings: typing.Any) -> None:
    settings.NEXIOS_COMPAT = {"HISTORY_MAX_MESSAGES": 1}
    store = DatabaseHistoryStore()
    assert store.last_seq("none") == 0
    save("r", 1, 2, 3)
    store.prune()
    assert store.last_seq("r") == 3
    store.flush("r")
    assert store.last_seq("r") == 3
    assert save("r", 4) == [4]


class LaggingLayer(InMemoryChannelLayer):
    """An in-memory layer that holds broadcasts back until ``release()``, as a busy network would."""

    def __init__(self, **kwargs: typing.Any) -> None:
        super().__init__(**kwargs)
        self.held: list[tuple[str, dict[str, typing.Any]]] = []

    async def group_send(self, group: str, message: dict[str, typing.Any]) -> None:
        if message.get("type") != "nexios.fanout":  # probes and control messages pass
            await super().group_send(group, message)
            return
        self.held.append((group, message))

    async def release(self) -> None:
        """Let every broadcast held so far arrive."""
        held, self.held = self.held, []
        for group, message in held:
            await super().group_send(group, message)


async def test_resume_does_not_repeat_a_message_still_on_its_way(settings: typing.Any) -> None:
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "tests.unit.test_history.LaggingLayer", "CONFIG": {"capacity": 10000}}
    }
    app = room_app()
    speaker, _ = await join(app, "/room/lag")
    # Another process saves seq 1 and publishes it; the layer has not brought it here yet.
    message = pending("lag", {"n": 1})
    (saved,) = await sync_to_async(DatabaseHistoryStore().append)([message])
    await publish_remote(message, saved)
    layer = typing.cast(LaggingLayer, get_layer())
    assert len(layer.held) == 1
    resumer, replayed = await join(app, "/room/lag?since=0&envelope=1")
    assert [frame["seq"] for frame in replayed] == [1]
    await layer.release()  # now it arrives, after the resumer read it from history
    assert await speaker.receive_json_from(timeout=2) == {"n": 1}
    assert await resumer.receive_nothing(timeout=0.5), "seq 1 was delivered twice"
    await speaker.disconnect()
    await resumer.disconnect()
