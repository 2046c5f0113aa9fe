"""Flow control of what the server sends a socket: frames from broadcasts, the send backlog, draining."""

from __future__ import annotations

import asyncio
import logging
import typing

from .. import metrics
from ..encoding import FrameCache
from ..types import PayloadTypeEnum
from ._asgi import Message, Receive, Send, WebSocketState
from ._daphne import daphne_close, unwrap_session_send

logger = logging.getLogger("nexios_compat.websockets")

# A sender that can wait (a history replay) waits while more than half of
# MAX_SEND_BACKLOG is queued; a client that takes nothing for this long is closed.
DRAIN_TIMEOUT = 10.0
NO_LIMIT = 1 << 62


class SendFlow:
    """What ``WebSocket`` does to keep a client that reads slowly from costing unbounded memory."""

    application_state: WebSocketState
    client_state: WebSocketState
    _send: Send
    _receive: Receive
    _frame_send: Send | None
    _protocol: typing.Any
    _buffer: typing.Any
    _max_backlog: int
    # Under daphne, once accepted: the transport prepared frames go to, their size limit, and
    # daphne's record of the connection (``None``: every frame takes the ASGI path).
    _direct: typing.Any
    _direct_limit: int
    _connection: dict[str, typing.Any] | None

    @property
    def client(self) -> typing.Any:
        """The client's address (``WebSocket`` provides it)."""
        raise NotImplementedError

    async def send_frame(self, message: Message) -> bool:
        """Send a prepared ``websocket.send`` message if open; return whether it was sent."""
        if self.application_state != WebSocketState.CONNECTED:
            return False
        protocol = self._protocol
        if protocol is not None and protocol.state != protocol.STATE_OPEN:
            # Closing under daphne (the client's close frame came in, or ours went out):
            # autobahn would raise ``Disconnected``, failing a broadcast or presence flush
            # to every other member. daphne checks its own flag only after ``onClose``.
            return False
        if self._frame_send is None:
            self._frame_send = unwrap_session_send(self._send)
        await self._frame_send(message)
        (metrics.OUT_TEXT if message.get("text") is not None else metrics.OUT_BYTES).inc()
        buffer = self._buffer  # a client that stops reading must not make this grow forever
        if buffer is not None and self._max_backlog < (
            len(buffer.dataBuffer) - buffer.offset + buffer._tempDataLen
        ):
            self._backlog_exceeded()
        return True

    def write_prepared(self, cache: FrameCache, payload_type: PayloadTypeEnum, envelope: int) -> bool:
        """Write a broadcast's frame, framed once for every member, to daphne's transport.

        Returns ``False`` when the frame must take the ASGI path instead (another
        server, a socket not open, a frame daphne would not send as is); that path
        then does what it always did. Written in place, synchronously, as daphne
        writes an ASGI ``websocket.send``, so this socket's frames keep their order
        across the two paths. The backlog bound applies as to every frame.
        """
        transport = self._direct
        if transport is None or self.application_state is not WebSocketState.CONNECTED:
            return False
        protocol = self._protocol
        connection = self._connection
        if protocol.state != protocol.STATE_OPEN or connection is None or "disconnected" in connection:
            return False
        data = cache.wire(payload_type, envelope)
        if data is None or len(data) > self._direct_limit:
            return False
        if protocol.send_queue:  # behind autobahn's queued writes, as its sendData does
            protocol.sendData(data)
        else:
            transport.write(data)
        (metrics.OUT_BYTES if data[0] == 0x82 else metrics.OUT_TEXT).count += 1  # FrameCount.inc, inlined
        buffer = self._buffer
        if buffer is not None and self._max_backlog < (
            len(buffer.dataBuffer) - buffer.offset + buffer._tempDataLen
        ):
            self._backlog_exceeded()
        return True

    # Flow control and shutdown ------------------------------------------------

    def backlog(self) -> int:
        """Bytes sent to this socket that the client has not taken yet (0 when not under daphne).

        What waits in the server's buffer because the kernel's socket buffers are
        full; bounded by ``MAX_SEND_BACKLOG``.
        """
        buffer = self._buffer
        if buffer is None:
            return 0
        return int(len(buffer.dataBuffer) - buffer.offset + buffer._tempDataLen)

    def _backlog_exceeded(self) -> None:
        """Close a socket whose client stopped reading: 1008, then drop its TCP connection.

        The close frame waits behind the backlog the client is not reading, so the
        connection is aborted at once: the buffered bytes are freed, daphne reports
        the disconnect and the handler leaves its rooms as after any drop.
        """
        logger.warning(
            "Closing the WebSocket of %s:%s with 1008: %d bytes wait for a client that is not "
            "reading (MAX_SEND_BACKLOG is %d)",
            *self.client,
            self.backlog(),
            self._max_backlog,
        )
        if self.application_state == WebSocketState.CONNECTED:
            daphne_close(self._send, 1008, "Send backlog exceeded")
            self.application_state = WebSocketState.DISCONNECTED
        drop = getattr(self._protocol, "dropConnection", None)
        if drop is not None:
            drop(abort=True)

    async def drain(self, timeout: float = DRAIN_TIMEOUT) -> None:
        """Wait while more than half of ``MAX_SEND_BACKLOG`` is queued (for senders that can wait).

        A history replay sends many frames at once: it waits here instead of
        tripping the limit. A client that takes nothing for ``timeout`` seconds
        is closed as over its backlog.
        """
        buffer = self._buffer
        if buffer is None or self.backlog() <= self._max_backlog // 2:
            return
        loop = asyncio.get_running_loop()
        queued, progress = self.backlog(), loop.time()
        while queued > self._max_backlog // 2:
            if self.application_state != WebSocketState.CONNECTED or not buffer.connected:
                return
            await asyncio.sleep(0.005)
            now = self.backlog()
            if now < queued:
                progress = loop.time()
            elif loop.time() - progress > timeout:
                self._backlog_exceeded()
                return
            queued = now

    async def wait_closed(self, timeout: float) -> None:
        """After the server's close frame, wait (at most ``timeout`` s) for the client's disconnect.

        Frames still arriving are dropped. Used when the server stops: the close
        frame is then known to have left before the server drops its connections.
        """
        if self.client_state != WebSocketState.CONNECTED:
            return
        if self.application_state == WebSocketState.CONNECTED:
            return
        try:
            async with asyncio.timeout(timeout):
                while (await self._receive())["type"] != "websocket.disconnect":
                    pass
        except TimeoutError:
            return
        self.client_state = WebSocketState.DISCONNECTED
