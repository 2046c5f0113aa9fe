"""Carry one emitter's events to the same emitter in every other process, on the channel layer.

Each process's relay sends from one task, in emit order, to the group
``nexios_compat.events.<name>``, and receives on one channel of its own in
that group. Messages are numbered per sending relay: a receiver drops its
own (their listeners ran at emit) and any number it has already delivered,
so a process gets each event once. Delivery is the channel layer's: at most
once, in order from one sender; events sent while a process is not
subscribed are not replayed to it.

The relay holds no emitter: it gets a ``deliver(name, args, kwargs)``
callback, so it can be driven and tested on its own.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import typing
import uuid
from collections.abc import Callable

from asgiref.sync import async_to_sync
from channels.layers import BaseChannelLayer

from ..engine.layer import get_layer, refresh_interval

logger = logging.getLogger("nexios_compat.events")

Deliver = Callable[[str, list[typing.Any], dict[str, typing.Any]], None]

MESSAGE_TYPE = "nexios.event"
GROUP_PREFIX = "nexios_compat.events."
# Re-add the receiving channel to its group this often (and twice per the layer's group expiry).
REFRESH = 3600.0
_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,60}$")


class Relay:
    """Send and receive one emitter's events across processes (see the module docstring)."""

    def __init__(self, name: str, deliver: Deliver) -> None:
        if not _NAME.match(name):
            raise ValueError(f"A shared emitter's name must match {_NAME.pattern}: {name!r}")
        self.group = GROUP_PREFIX + name
        self.deliver = deliver
        self.origin = uuid.uuid4().hex
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[dict[str, typing.Any]] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._subscribed: asyncio.Future[None] | None = None
        self._seq = 0
        # The last number delivered here, per sending relay.
        self._seen: dict[str, int] = {}

    # Sending -----------------------------------------------------------

    def publish(self, event: str, args: list[typing.Any], kwargs: dict[str, typing.Any]) -> None:
        """Queue ``event`` for the other processes (from any thread; order kept per relay)."""
        # Refuse what the layer could not carry now, in the emitter's frame, not later in a task.
        json.dumps([args, kwargs])
        message: dict[str, typing.Any] = {"type": MESSAGE_TYPE, "origin": self.origin, "event": event}
        message.update(args=args, kwargs=kwargs)
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        with self._lock:
            loop = self._loop
            if running is not None and (loop is None or loop.is_closed() or not loop.is_running()):
                self._start(running)
                loop = running
            if loop is None or loop.is_closed() or not loop.is_running():
                # No loop of ours runs (a script, a management command): send now, in this thread.
                async_to_sync(self._send)(self._number(message))
                return
            queue = self._queue
            assert queue is not None
            if loop is running:
                queue.put_nowait(message)
            else:  # another thread (a sync view under daphne): hand it to our loop, in order
                loop.call_soon_threadsafe(queue.put_nowait, message)

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        # Called with self._lock held, on ``loop``.
        self._loop = loop
        self._queue = asyncio.Queue()
        self._subscribed = None
        self._tasks = [loop.create_task(self._sender(self._queue), name="nexios_compat.events-send")]

    def _number(self, message: dict[str, typing.Any]) -> dict[str, typing.Any]:
        self._seq += 1
        return {**message, "seq": self._seq}

    async def _send(self, message: dict[str, typing.Any]) -> None:
        layer = get_layer()
        await layer.group_send(self.group, message)

    async def _sender(self, queue: asyncio.Queue[dict[str, typing.Any]]) -> None:
        # One task sends, one message at a time: the layer keeps one sender's order.
        while True:
            message = await queue.get()
            try:
                await self._send(self._number(message))
            except Exception:
                logger.exception("Could not send event %r to the other processes", message["event"])
            finally:
                queue.task_done()

    async def flush(self) -> None:
        """Wait until every event published on this loop has been sent."""
        if self._queue is not None and self._loop is asyncio.get_running_loop():
            await self._queue.join()

    # Receiving ---------------------------------------------------------

    async def subscribe(self) -> None:
        """Join the group (once per process and loop); return when this process receives."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._loop is not loop:
                self._start(loop)
            if self._subscribed is None:
                self._subscribed = loop.create_future()
                self._tasks.append(
                    loop.create_task(self._receiver(self._subscribed), name="nexios_compat.events-receive")
                )
            subscribed = self._subscribed
        await asyncio.shield(subscribed)

    async def _receiver(self, subscribed: asyncio.Future[None]) -> None:
        layer = get_layer()
        try:
            # The layer's default prefix: channels_redis has one receive lock for all of a
            # process's channels, and a holder pops only its own prefix's list, so a channel
            # of another prefix would wait out the hub's 5 s pops.
            channel = await layer.new_channel()
            await layer.group_add(self.group, channel)
        except BaseException as exc:
            with self._lock:
                self._subscribed = None  # the next connection tries again
            subscribed.set_exception(exc)
            raise
        subscribed.set_result(None)
        refresher = asyncio.create_task(self._refresh(layer, channel), name="nexios_compat.events-refresh")
        try:
            while True:
                message = await layer.receive(channel)
                self._receive(message)
        finally:
            refresher.cancel()

    async def _refresh(self, layer: BaseChannelLayer, channel: str) -> None:
        interval = refresh_interval(layer, REFRESH)
        while True:
            await asyncio.sleep(interval)
            try:
                await layer.group_add(self.group, channel)
            except Exception:
                logger.exception("Could not renew this process's subscription to %s", self.group)

    def _receive(self, message: dict[str, typing.Any]) -> None:
        if message.get("type") != MESSAGE_TYPE:
            return
        origin, seq = message["origin"], int(message["seq"])
        if origin == self.origin or seq <= self._seen.get(origin, 0):
            return  # our own (delivered at emit), or one this process has had
        self._seen[origin] = seq
        self.deliver(message["event"], list(message["args"]), dict(message["kwargs"]))

    async def aclose(self) -> None:
        """Cancel the sending and receiving tasks of this loop."""
        with self._lock:
            tasks, self._tasks = self._tasks, []
            self._loop, self._queue, self._subscribed = None, None, None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
