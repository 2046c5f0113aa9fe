"""``EventEmitter(across_processes=True)`` across two real daphne processes on a real Redis.

Both serve ``tests.sites.events.asgi`` (``app.events`` shared as ``"events-test"``);
a listener socket on each receives what that process's listener gets.
"""

from __future__ import annotations

import asyncio
import json
import typing

import pytest
from websockets.asyncio.client import ClientConnection

from devservers import DaphneServer
from tests.support.cluster import cluster_env, migrate
from tests.support.helpers import TIMEOUT
from tests.support.site import open_ws

pytestmark = pytest.mark.timeout(120)

APP = "tests.sites.events.asgi:application"
COUNT = 50


async def frame(ws: ClientConnection) -> typing.Any:
    return json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))


async def notes_until(ws: ClientConnection, last: typing.Any) -> list[tuple[typing.Any, int]]:
    """The notes a listener receives, up to and including ``last``."""
    notes: list[tuple[typing.Any, int]] = []
    while not notes or notes[-1][0] != last:
        try:
            data = await frame(ws)
        except TimeoutError:
            pytest.fail(f"no {last!r} after {notes}")
        notes.append((data["n"], data["pid"]))
    return notes


async def flush(ws: ClientConnection) -> None:
    await ws.send(json.dumps("flush"))
    assert await frame(ws) == "flushed"


async def test_every_process_hears_each_event_once_in_emit_order(
    redis_url: str, postgres_url: str, daphne_factory: typing.Any
) -> None:
    env = cluster_env(redis_url, postgres_url)
    migrate(env)  # the processes register in the database as they start serving
    a: DaphneServer = daphne_factory(env=env, app=APP)
    b: DaphneServer = daphne_factory(env=env, app=APP)
    listen_a, listen_b = await open_ws(a, "/events/listen"), await open_ws(b, "/events/listen")
    # Each process is subscribed before it accepts a connection: "ready" means it receives.
    pid_a, pid_b = (await frame(listen_a))["ready"], (await frame(listen_b))["ready"]
    assert pid_a != pid_b
    emit_a, emit_b = await open_ws(a, "/events/emit"), await open_ws(b, "/events/emit")

    for n in range(COUNT):
        await emit_a.send(json.dumps(n))
    await emit_a.send(json.dumps("a-done"))
    expected = [*range(COUNT), "a-done"]
    assert await notes_until(listen_b, "a-done") == [(n, pid_b) for n in expected]
    assert await notes_until(listen_a, "a-done") == [(n, pid_a) for n in expected]

    # Had a's own events come back to it through the layer, they would reach its listener
    # before b's next event: a's group_send put them in a's channel before b received them.
    await flush(emit_a)
    await emit_b.send(json.dumps("b-done"))
    assert await notes_until(listen_a, "b-done") == [("b-done", pid_a)]
    assert await notes_until(listen_b, "b-done") == [("b-done", pid_b)]
    await flush(emit_b)

    # Both directions at once: each listener gets both sequences, each in its own order.
    for n in range(10):
        await emit_a.send(json.dumps(f"a{n}"))
        await emit_b.send(json.dumps(f"b{n}"))
    await emit_a.send(json.dumps("a-end"))
    await emit_b.send(json.dumps("b-end"))
    for listener, pid in ((listen_a, pid_a), (listen_b, pid_b)):
        got: list[typing.Any] = []
        while "a-end" not in got or "b-end" not in got:
            data = await frame(listener)
            assert data["pid"] == pid
            got.append(data["n"])
        assert [n for n in got if str(n).startswith("a")] == [*(f"a{n}" for n in range(10)), "a-end"]
        assert [n for n in got if str(n).startswith("b")] == [*(f"b{n}" for n in range(10)), "b-end"]
    for ws in (listen_a, listen_b, emit_a, emit_b):
        await ws.close()
