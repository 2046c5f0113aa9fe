"""Serving one socket: open it on this loop's hub, run its handler, clean up after it."""

from __future__ import annotations

import asyncio
import functools
import logging
import typing
from collections.abc import Callable, Coroutine

from ..engine import Hub, current_hub, get_hub
from ..exceptions import HistoryUnavailable, WebSocketException
from .base import WebSocket, WebSocketDisconnect, WebSocketState, current_websocket
from .utils import WS_1000_NORMAL_CLOSURE, WS_1011_INTERNAL_ERROR, WS_1013_TRY_AGAIN_LATER

logger = logging.getLogger("nexios_compat.consumers")


async def finish(hub: Hub, websocket: WebSocket, close_code: int) -> None:
    """Leave every room of the socket's channels and close it if the handler did not.

    Interrupted (cancelled while a row or the layer is slow), the rooms are left
    all the same, at once: see ``leave_now``.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        leave_now(hub, websocket)  # cancelled (e.g. in on_disconnect): nothing slow from here on
    try:
        for channel in list(websocket.channels):
            await hub.discard(channel)
        if websocket.application_state == WebSocketState.CONNECTED:
            await websocket.close(close_code if close_code != 1006 else WS_1000_NORMAL_CLOSURE)
    finally:
        leave_now(hub, websocket)


def leave_now(hub: Hub, websocket: WebSocket) -> None:
    """Take the socket's channels out of every room without awaiting (a no-op once they left).

    A cancelled handler (daphne's ``application_close_timeout``, 10 s after its
    client left, while it waits on a stalled database) must not await again: the
    next await may be cut short, or hang on the same database. The registry,
    presence and the member slot go now; rows are owed to the reconciler.
    """
    for channel in list(websocket.channels):
        hub.drop(channel)


async def open_socket(websocket: WebSocket) -> Hub | None:
    """Return this loop's hub, or refuse the handshake (``None``) if the server is shutting down."""
    hub = current_hub()
    if hub is not None and hub.stopping:
        await websocket.close(1001, "Server shutting down")
        return None
    return await get_hub()


Begin = Callable[[Hub, WebSocket], Coroutine[typing.Any, typing.Any, None]]


async def serve(websocket: WebSocket, begin: Begin) -> None:
    """Open the socket on this loop's hub, then run its handler in a task daphne's shutdown does not cancel.

    ``begin(hub, websocket)`` returns the handler's coroutine, once the hub is known.
    On SIGTERM daphne cancels every application, which would interrupt a
    handler wherever it is: mid-broadcast, mid-query, with no close frame and no
    ``on_disconnect``. Instead, while the hub drains (its shutdown closes every
    socket with 1001), the cancellation is absorbed and the handler ends as on
    any close. Every other cancellation (daphne's ``application_close_timeout``,
    a test's communicator, the hub's own deadline) reaches the handler as before.
    """
    current_websocket.set(websocket)
    hub = await open_socket(websocket)
    if hub is None:
        return
    this = asyncio.current_task()
    task = asyncio.ensure_future(begin(hub, websocket))
    shutdown = hub.shutdown
    shutdown.connection_started(websocket, task)
    loop = asyncio.get_running_loop()
    try:
        while True:
            # A bare future woken by the task, not asyncio.shield: what an idle socket
            # holds while it waits is one future and one callback.
            waiter = loop.create_future()
            task.add_done_callback(functools.partial(_wake, waiter))
            try:
                await waiter
                task.result()  # what the handler raised, as shield would have
                break
            except asyncio.CancelledError:
                if task.done() or not shutdown.draining or this is None:
                    if not task.done():
                        task.cancel()
                        await asyncio.wait([task])
                    raise
                this.uncancel()  # the server is stopping: the hub closes this socket instead
        if shutdown.stopping:
            # Let the 1001 close frame reach the client before daphne drops every connection.
            await websocket.wait_closed(shutdown.deadline - loop.time())
    finally:
        shutdown.connection_finished(websocket)


def _wake(waiter: asyncio.Future[None], task: asyncio.Future[None]) -> None:
    if not waiter.done():  # cancelled by the server's cancellation of the application
        waiter.set_result(None)


async def close_code_for(websocket: WebSocket, exc: Exception, name: str) -> int:
    """The close code for what a connection's handling raised, closing the socket for it.

    A disconnect gives the client's code; a ``WebSocketException`` closes with its
    code and reason; ``HistoryUnavailable`` (a saved send the database could not
    take, which a function handler did not catch) sends the error frame and
    closes with 1013 Try Again Later; any other error is logged and closes only
    this socket, with 1011. Awaited in the handler's own ``except``: the idle
    socket keeps no frame of it.
    """
    if isinstance(exc, WebSocketDisconnect):
        return exc.code
    if isinstance(exc, WebSocketException):
        await websocket.close(exc.code, str(exc))
        return exc.code
    if isinstance(exc, HistoryUnavailable):
        # The database's fault, not the handler's: the client may reconnect and retry.
        logger.warning("%s: history unavailable; closing the socket with 1013", name)
        if websocket.application_state == WebSocketState.CONNECTED and not exc.reported:
            await websocket.send_text(exc.client_frame)
        await websocket.close(WS_1013_TRY_AGAIN_LATER, "History unavailable")
        return WS_1013_TRY_AGAIN_LATER
    logger.error("%s failed; closing the socket with 1011", name, exc_info=exc)
    await websocket.close(WS_1011_INTERNAL_ERROR, "Internal error")
    return WS_1011_INTERNAL_ERROR
