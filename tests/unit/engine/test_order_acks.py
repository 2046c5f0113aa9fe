"""The sender's ack comes after its own echo, also when the echo is held behind another process's gap."""

from __future__ import annotations

import asyncio
import json
import typing

from nexios_compat.encoding import FrameCache
from nexios_compat.engine.ordering import RoomOrdering
from nexios_compat.engine.registry import LocalRegistry
from nexios_compat.engine.replies import SenderReplies
from nexios_compat.stores.history import PendingMessage, SavedMessage
from tests.support.fakes import FakeMember, until


async def test_an_ack_waits_for_its_echo_held_behind_a_gap() -> None:
    member = FakeMember()
    seen: list[str] = []  # what the sender's socket gets, in order

    async def deliver(cache: FrameCache) -> None:
        seen.append(f"echo {cache.seq}")

    async def read_since(room: str, since: int) -> tuple[list[FrameCache], int]:
        return [], since

    async def send_frame(frame: typing.MutableMapping[str, typing.Any]) -> bool:
        seen.append(f"ack {json.loads(frame['text'])['seq']}")
        return True

    member.send_frame = send_frame  # type: ignore[method-assign]
    registry = LocalRegistry()
    registry.register(member)
    ordering = RoomOrdering(deliver, read_since, 3600.0)
    ordering.start("r", 1, "e")
    tasks: list[asyncio.Task[None]] = []
    replies = SenderReplies(registry, ordering, lambda coro, name: tasks.append(asyncio.create_task(coro)))
    mine = PendingMessage(room="r", kind="text", text="mine", data=None, sender=member.id, client_id="c1")

    # Our seq 2 is stored and offered before another process's seq 1 has arrived: held.
    await ordering.offer(FrameCache("r", "text", "mine", None, 2, "e"))
    assert ordering.holding("r")
    await replies.ack(mine, SavedMessage(2, member.id, None, "e"))  # type: ignore[arg-type]
    for _ in range(5):
        await asyncio.sleep(0)
    assert seen == []
    await ordering.offer(FrameCache("r", "text", "theirs", None, 1, "e"))
    await until(lambda: len(seen) == 3, "the echoes and the ack")
    assert seen == ["echo 1", "echo 2", "ack 2"]
    # Nothing held: the ack goes at once.
    await ordering.offer(FrameCache("r", "text", "next", None, 3, "e"))
    await replies.ack(mine, SavedMessage(3, member.id, None, "e"))  # type: ignore[arg-type]
    assert seen[3:] == ["echo 3", "ack 3"] and not ordering.holding("r")
    await asyncio.gather(*tasks)
