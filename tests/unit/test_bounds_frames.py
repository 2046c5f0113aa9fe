"""Frames are charged against the limits when they arrive, and a blocked handler's queue is bounded."""

from __future__ import annotations

import asyncio
import typing

import pytest
from channels.testing import WebsocketCommunicator

from nexios_compat import WebSocket, get_application

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("hub_cleanup")]


def blocked_app(release: asyncio.Event, taken: list[str]) -> typing.Any:
    """Echo every frame, but only once ``release`` is set (a handler stuck on the database, say)."""
    app = get_application()

    @app.websocket("/blocked")
    async def blocked(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_text("ready")
        await release.wait()
        while True:
            text = await ws.receive_text()
            taken.append(text)
            await ws.send_text(text)

    return app


def queued(communicator: WebsocketCommunicator) -> int:
    """Frames waiting for the handler (the application's receive queue)."""
    return communicator.input_queue.qsize()


async def flood(
    settings: typing.Any, count: int, **config: typing.Any
) -> tuple[WebsocketCommunicator, asyncio.Event]:
    settings.NEXIOS_COMPAT = config
    release, taken = asyncio.Event(), list[str]()
    communicator = WebsocketCommunicator(blocked_app(release, taken), "/blocked")
    assert (await communicator.connect())[0]
    assert await communicator.receive_from() == "ready"
    for n in range(count):
        await communicator.send_to(text_data=f"frame {n}")
    return communicator, release


async def test_frames_queued_behind_a_blocked_handler_are_bounded_and_the_flooder_closed(
    settings: typing.Any,
) -> None:
    communicator, release = await flood(settings, 200, MAX_QUEUED_FRAMES=10)
    assert queued(communicator) <= 11  # ten frames and the verdict, not two hundred
    release.set()
    output = [await communicator.receive_output() for _ in range(11)]
    assert output[-1] == {"type": "websocket.close", "code": 1008, "reason": "Too many queued frames"}
    assert [frame["text"] for frame in output[:-1]] == [f"frame {n}" for n in range(10)]


async def test_an_oversized_frame_is_judged_on_arrival_and_not_held(settings: typing.Any) -> None:
    communicator, release = await flood(settings, 0, MAX_MESSAGE_SIZE=100)
    await communicator.send_to(text_data="x" * 10_000)
    await communicator.send_to(text_data="after")
    # Neither the big frame nor what followed it waits in memory: only the verdict.
    assert queued(communicator) == 1
    assert all("x" * 200 not in str(message) for message in communicator.input_queue._queue)
    release.set()
    assert (await communicator.receive_output())["code"] == 1009


async def test_the_rate_is_charged_at_arrival(settings: typing.Any) -> None:
    communicator, release = await flood(settings, 30, RATE_LIMIT_MESSAGES=1, RATE_LIMIT_BURST=5)
    assert queued(communicator) == 6  # five that passed and the verdict
    release.set()
    texts = [await communicator.receive_output() for _ in range(6)]
    assert texts[-1]["code"] == 1008 and texts[-1]["reason"] == "Rate limit exceeded"


async def test_the_default_holds_what_nexios_holds(settings: typing.Any) -> None:
    communicator, release = await flood(settings, 300)
    assert queued(communicator) == 300
    release.set()
    for n in range(300):
        assert await communicator.receive_from() == f"frame {n}"
    await communicator.disconnect()


async def test_one_flooder_leaves_another_client_alone(settings: typing.Any) -> None:
    flooder, flooder_release = await flood(settings, 50, MAX_QUEUED_FRAMES=5)
    calm, calm_release = await flood(settings, 3, MAX_QUEUED_FRAMES=5)
    flooder_release.set()
    calm_release.set()
    assert [await calm.receive_from() for _ in range(3)] == ["frame 0", "frame 1", "frame 2"]
    flooded = [await flooder.receive_output() for _ in range(6)]
    assert flooded[-1]["type"] == "websocket.close" and flooded[-1]["code"] == 1008
    await calm.disconnect()
