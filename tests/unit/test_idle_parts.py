"""What an idle socket no longer holds of its own still works: its receive queue, trimmed."""

from __future__ import annotations

import asyncio

from nexios_compat.websockets._daphne import trim_queue


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
