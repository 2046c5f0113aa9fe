"""What an idle socket holds: few coroutine frames of ours, and a trimmed receive queue that still works."""

from __future__ import annotations

import asyncio
import collections
import pathlib
import typing

import pytest
from channels.testing import WebsocketCommunicator

import nexios_compat
from nexios_compat import WebSocket, get_application
from nexios_compat.security import SecureWebSocketStack
from nexios_compat.websockets import Channel, ChannelBox
from nexios_compat.websockets._daphne import trim_queue

PACKAGE = str(pathlib.Path(nexios_compat.__file__).parent)


async def test_a_trimmed_queue_still_queues_and_wakes_its_reader() -> None:
    first: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    second: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    trim_queue(first)
    trim_queue(second)
    # The parts an unbounded queue never uses are one shared pair, not a pair per socket.
    assert first._putters is second._putters  # type: ignore[attr-defined]
    assert first._finished is second._finished  # type: ignore[attr-defined]
    reader = asyncio.ensure_future(first.get())
    await asyncio.sleep(0)  # the reader waits on the empty queue
    first.put_nowait({"type": "websocket.receive", "text": "a"})
    first.put_nowait({"type": "websocket.receive", "text": "b"})
    assert (await asyncio.wait_for(reader, 5))["text"] == "a"
    assert first.get_nowait()["text"] == "b"
    assert second.empty() and not first._putters  # type: ignore[attr-defined]


async def test_a_bounded_or_busy_queue_is_left_alone() -> None:
    bounded: asyncio.Queue[int] = asyncio.Queue(maxsize=1)
    own = bounded._putters  # type: ignore[attr-defined]
    trim_queue(bounded)
    assert bounded._putters is own  # type: ignore[attr-defined]
    joined: asyncio.Queue[int] = asyncio.Queue()
    joined.put_nowait(1)
    waiter = asyncio.ensure_future(joined.join())
    await asyncio.sleep(0)  # someone waits on join(): its event is in use
    event = joined._finished  # type: ignore[attr-defined]
    trim_queue(joined)
    assert joined._finished is event  # type: ignore[attr-defined]
    joined.get_nowait()
    joined.task_done()
    await asyncio.wait_for(waiter, 5)


def awaiting(task: asyncio.Task[typing.Any]) -> list[str]:
    """The code objects of ``task``'s await chain, outermost first (``file:function``)."""
    names = []
    coro: typing.Any = task.get_coro()
    while coro is not None:
        code = getattr(coro, "cr_code", None) or getattr(coro, "gi_code", None)
        if code is None:
            break  # a future: the bottom of the chain
        names.append(f"{code.co_filename}:{code.co_name}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return names


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("hub_cleanup")
async def test_an_idle_room_member_keeps_four_frames_of_ours() -> None:
    # The bench peer's socket: origin check, session auth, tickets, route, a function
    # handler that joins a room and waits in receive_json.
    app = get_application()
    joined = asyncio.Event()

    @app.websocket("/ws/idle/{room}/")
    async def idle(websocket: WebSocket, room: str) -> None:
        await websocket.accept()
        await ChannelBox.add_channel_to_group(Channel(websocket=websocket, payload_type="json"), room)
        joined.set()
        await websocket.receive_json()

    headers = [(b"origin", b"http://testserver"), (b"host", b"testserver")]
    before = asyncio.all_tasks()
    communicator = WebsocketCommunicator(SecureWebSocketStack(app), "/ws/idle/lobby/", headers=headers)
    connected, _ = await communicator.connect()
    assert connected
    await asyncio.wait_for(joined.wait(), 5)
    try:
        chains = [awaiting(task) for task in asyncio.all_tasks() - before]
        served = [chain for chain in chains if any(name.endswith(":idle") for name in chain)]
        assert len(served) == 1, chains  # the handler runs in one task of its own
        outer = awaiting(typing.cast(asyncio.Task[typing.Any], communicator.future))
        ours = [name for name in outer + served[0] if name.startswith(PACKAGE)]
        # serve() in the application's task; the connection's frame, receive_json and
        # receive in the handler's. Every pass-through wrapper (origin check, tickets,
        # the app, its routes, the route, as_asgi) returned its inner coroutine, and the
        # close-code bookkeeping is not awaited while the handler runs.
        assert len(ours) == 4, ours
        assert [name.rpartition(":")[2] for name in ours] == [
            "serve",
            "_handle_connection",
            "receive_json",
            "receive",
        ]
    finally:
        await communicator.disconnect()


async def test_a_trimmed_queue_keeps_short_lists_and_order_through_a_burst() -> None:
    queue: asyncio.Queue[int] = asyncio.Queue()
    queue.put_nowait(0)  # daphne queues websocket.connect before the application runs
    trim_queue(queue)
    # Neither part is a 760-byte deque while the socket is idle.
    assert type(queue._queue) is not collections.deque  # type: ignore[attr-defined]
    assert type(queue._getters) is not collections.deque  # type: ignore[attr-defined]
    assert queue.get_nowait() == 0
    for i in range(1, 40):  # a burst past the short form, and back
        queue.put_nowait(i)
    assert queue.qsize() == 39
    assert [queue.get_nowait() for _ in range(39)] == list(range(1, 40))
    assert queue.empty()
    # A cancelled reader leaves the waiting list; the next one is woken.
    cancelled = asyncio.ensure_future(queue.get())
    reader = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)  # both wait on the empty queue
    cancelled.cancel()
    await asyncio.wait([cancelled])
    queue.put_nowait(99)
    assert await asyncio.wait_for(reader, 5) == 99
    assert not queue._getters  # type: ignore[attr-defined]
