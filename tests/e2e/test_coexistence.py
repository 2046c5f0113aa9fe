"""A site's own Channels consumers keep working beside nexios_compat rooms in one daphne.

One real daphne (``tests.sites.coexistence.asgi``) on each layer a site may run serves
plain ``AsyncJsonWebsocketConsumer`` consumers (a group room, and one reached
by ``channel_layer.send`` to its single channel) beside nexios_compat rooms.
Every plain message must arrive before any room has run in the process, after
one has, and while one is live with traffic of its own. (channels_redis
serves all of a process's channels from one receive loop: a hub that received
on a channel of its own prefix starved the plain consumers there.)
"""

from __future__ import annotations

import asyncio
import typing

import pytest

from devservers import DaphneServer
from tests.support.cluster import Control, Member, cluster_env, migrate
from tests.support.helpers import room_name

pytestmark = pytest.mark.timeout(180)

PLAIN_MEMBERS = 20
PLAIN_MESSAGES = 100  # 20 x 100 = 2000 deliveries per phase
DIRECT_MESSAGES = 200


@pytest.fixture(params=["redis", "pubsub", "memory"])
def server(request: pytest.FixtureRequest, daphne_factory: typing.Any) -> DaphneServer:
    """One daphne serving plain consumers and rooms on the layer named by the parameter."""
    redis_url = request.getfixturevalue("redis_url") if request.param != "memory" else ""
    env = {**cluster_env(redis_url, request.getfixturevalue("postgres_url")), "MP_LAYER": request.param}
    migrate(env)
    started: DaphneServer = daphne_factory(env=env, app="tests.sites.coexistence.asgi:application")
    return started


async def plain_group_delivers_everything(server: DaphneServer, phase: str) -> None:
    """A plain group room of ``PLAIN_MEMBERS`` gets every one of ``PLAIN_MESSAGES``, in order."""
    group = room_name(f"plain-{phase}")
    path = f"/plain/room/{group}"
    members = [await Member.open(server, path, f"{phase}-{i}") for i in range(PLAIN_MEMBERS)]
    # The sender's own copy comes back through the group: all members are in it then.
    sender = members[0]
    await sender.send({"say": "ready"})
    for member in members:
        await member.wait(lambda frames: {"heard": "ready"} in frames, f"the {phase} ready message")
    sent = [f"{phase}-{i}" for i in range(PLAIN_MESSAGES)]
    for text in sent:
        await sender.send({"say": text})
    for member in members:
        await member.wait(lambda frames: {"heard": sent[-1]} in frames, f"all {phase} group messages")
        heard = [frame["heard"] for frame in member.frames if frame["heard"] != "ready"]
        assert heard == sent, f"{member.name}: {len(heard)}/{len(sent)}"
    await asyncio.gather(*(member.close() for member in members))


async def plain_send_delivers_everything(server: DaphneServer, phase: str) -> None:
    """``channel_layer.send`` to one plain consumer's channel delivers every message, in order."""
    sender = await Member.open(server, "/plain/direct", f"{phase}-sender")
    target = await Member.open(server, "/plain/direct", f"{phase}-target")
    await target.wait(lambda frames: len(frames) >= 1, "its channel name")
    channel = target.frames[0]["channel"]
    sent = [f"{phase}-{i}" for i in range(DIRECT_MESSAGES)]
    for text in sent:
        await sender.send({"to": channel, "say": text})
    await target.wait(lambda frames: {"direct": sent[-1]} in frames, f"all {phase} direct messages")
    assert [frame["direct"] for frame in target.frames[1:]] == sent
    await asyncio.gather(sender.close(), target.close())


async def plain_consumers_deliver_everything(server: DaphneServer, phase: str) -> None:
    await plain_group_delivers_everything(server, phase)
    await plain_send_delivers_everything(server, phase)


async def test_plain_consumers_get_every_message_before_after_and_while_rooms_run(
    server: DaphneServer,
) -> None:
    await plain_consumers_deliver_everything(server, "before")

    # A room runs and empties; the process's hub stays (and keeps receiving).
    room = room_name("rooms")
    control = await Control.open(server)
    member = await Member.open(server, f"/mp/member/{room}", "first")
    await member.wait(lambda frames: len(frames) >= 1, "its channel id")
    assert await control("group_send", room=room, payload={"n": 0}) == "GROUP_SEND"
    await member.wait(lambda frames: {"n": 0} in frames, "the room's broadcast")
    await member.close()
    await plain_consumers_deliver_everything(server, "after")

    # A room is live with its own traffic while the plain consumers talk.
    members = [await Member.open(server, f"/mp/member/{room}", f"live-{i}") for i in range(3)]
    for member in members:
        await member.wait(lambda frames: len(frames) >= 1, "its channel id")
    rounds = 100

    async def room_traffic() -> None:
        for n in range(1, rounds + 1):
            await control("group_send", room=room, payload={"n": n})

    await asyncio.gather(room_traffic(), plain_consumers_deliver_everything(server, "while"))
    for member in members:
        await member.wait(lambda frames: {"n": rounds} in frames, "the room's broadcasts")
        assert [frame["n"] for frame in member.frames[1:]] == list(range(1, rounds + 1)), member.name
    stats = await control("stats")
    assert stats["groups"] == {room: len(members)}
