"""``WebSocket``: what handlers receive, a thin state machine over ASGI messages."""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import time
import typing
from collections.abc import Awaitable, Callable, Iterable, MutableMapping

from .. import metrics
from ..conf import get_config
from ..encoding import dumps, loads
from ..engine import current_hub
from ..limits import FrameLimiter
from ..objects import URL, Address, Headers, QueryParams, State

logger = logging.getLogger("nexios_compat.websockets")

if typing.TYPE_CHECKING:
    from .channels import Channel

Scope = MutableMapping[str, typing.Any]
Message = MutableMapping[str, typing.Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class WebSocketState(enum.Enum):
    """Connection state, tracked separately for client and application."""

    CONNECTING = 0
    CONNECTED = 1
    DISCONNECTED = 2
    RESPONSE = 3


class WebSocketDisconnect(Exception):
    """Raised by ``receive_*`` when the client has gone away."""

    def __init__(self, code: int = 1000, reason: str | None = None) -> None:
        super().__init__(code, reason or "")
        self.code = code
        self.reason = reason or ""


def fill_scope(scope: Scope) -> Scope:
    """Add the keys Nexios handlers read (path_params, query_params, ...) to a scope.

    Nothing is parsed here: ``query_params`` parses on first read, so any scope
    a server or a test builds (``query_string`` as ``str`` included) is accepted.
    """
    scope.setdefault("headers", [])
    scope.setdefault("query_string", b"")
    if "path_params" not in scope:
        # Nexios's router stores them as "route_params"; Channels' as url_route kwargs.
        params = scope.get("route_params") or scope.get("url_route", {}).get("kwargs", {})
        scope["path_params"] = dict(params)
    if "query_params" not in scope:
        scope["query_params"] = QueryParams(scope["query_string"])
    return scope


# Close codes an endpoint may send (RFC 6455 section 7.4; 1004-1006 and 1015 are reserved).
_SENDABLE_CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})


def unwrap_session_send(send: Send) -> Send:
    """Return the server's ``send`` under Channels' session middleware wrappers.

    ``InstanceSessionWrapper.send`` only acts on ``websocket.accept`` and HTTP
    responses (to save the session), yet it reads the lazy session object on
    every frame: a tenth of the cost of a broadcast. Frames skip it.
    """
    for _ in range(8):
        inner = getattr(getattr(send, "__self__", None), "real_send", None)
        if inner is None:
            break
        send = inner
    return send


def _daphne_close(send: Send, code: int, reason: str | None) -> bool:
    """Under daphne, send the close frame through its protocol; return whether it was handled.

    daphne (autobahn's ``sendClose``) refuses application close codes other than
    1000 and 3000-4999: the ASGI ``websocket.close`` send raises and the socket
    stays open (daphne issue 374); it also drops the reason. daphne passes
    ``partial(Server.handle_reply, protocol)`` as ``send``, and the protocol's
    ``sendCloseFrame`` sends any valid code with its reason, as daphne itself
    does with 1011 when an application crashes.
    """
    send = unwrap_session_send(send)
    func = getattr(send, "func", None)
    args = getattr(send, "args", ())
    if (
        not args
        or getattr(func, "__qualname__", "") != "Server.handle_reply"
        or getattr(func, "__module__", "") != "daphne.server"
        or not (code in _SENDABLE_CLOSE_CODES or 3000 <= code <= 4999)
    ):
        return False
    protocol, server = args[0], getattr(func, "__self__", None)
    details = getattr(server, "connections", {}).get(protocol)
    if not details or details.get("disconnected"):
        return True  # daphne would ignore the message too: the client is gone
    if getattr(protocol, "state", None) != getattr(protocol, "STATE_OPEN", object()):
        return protocol.state in (protocol.STATE_CLOSING, protocol.STATE_CLOSED)
    raw = (reason or "").encode("utf-8")[:123].decode("utf-8", "ignore").encode("utf-8")
    protocol.sendCloseFrame(code=code, reasonUtf8=raw or None)
    return True


def _daphne_protocol(send: Send) -> typing.Any | None:
    """The daphne (autobahn) protocol behind ``send``, or ``None`` under another server."""
    send = unwrap_session_send(send)
    func = getattr(send, "func", None)
    args = getattr(send, "args", ())
    if (
        args
        and getattr(func, "__qualname__", "") == "Server.handle_reply"
        and getattr(func, "__module__", "") == "daphne.server"
    ):
        return args[0]
    return None


def _send_buffer(protocol: typing.Any) -> typing.Any | None:
    """The Twisted TCP transport whose user-space buffer holds what the client has not taken yet.

    ``dataBuffer[offset:]`` plus ``_tempDataLen`` bytes (twisted.internet.abstract.FileDescriptor)
    are written but not yet accepted by the kernel: they grow without bound while the client
    does not read. Under TLS the protocol's transport wraps the TCP one.
    """
    transport = getattr(protocol, "transport", None)
    for _ in range(4):
        if transport is None or hasattr(transport, "_tempDataLen"):
            break
        transport = getattr(transport, "transport", None)
    if transport is None or not all(hasattr(transport, a) for a in ("dataBuffer", "offset", "_tempDataLen")):
        return None
    return transport


# The key under which a frame carries the time (``time.monotonic()``) the server queued it.
ARRIVED = "nexios_compat.arrived"


def _receive_queue(receive: Receive) -> asyncio.Queue[Message] | None:
    """The queue behind ``receive`` when it is ``Queue.get`` (daphne, and Channels' test communicator)."""
    queue = getattr(receive, "__self__", None)
    return queue if isinstance(queue, asyncio.Queue) else None


def _stamp_arrivals(queue: asyncio.Queue[Message]) -> None:
    """Have every frame put on ``queue`` carry the time it arrived (under ``ARRIVED``).

    The server puts frames on the queue as they come off the network; the
    handler may take them much later (a stalled database, a slow handler).
    The rate limit charges them at their arrival, not at their processing.
    """
    put = queue.put_nowait
    if getattr(put, "_nexios_stamps", False):
        return

    def put_stamped(message: Message) -> None:
        if message.get("type") == "websocket.receive":
            message[ARRIVED] = time.monotonic()
        put(message)

    put_stamped._nexios_stamps = True  # type: ignore[attr-defined]
    queue.put_nowait = put_stamped  # type: ignore[method-assign,assignment]


def _client_gone(send: Send, queue: asyncio.Queue[Message] | None) -> bool:
    """Whether the client gave up before the handshake was answered (daphne, or a queued disconnect)."""
    protocol = _daphne_protocol(send)
    if protocol is not None:
        func = unwrap_session_send(send)
        server = getattr(getattr(func, "func", None), "__self__", None)
        details = getattr(server, "connections", {}).get(protocol)
        if details is None or details.get("disconnected"):
            return True
    # asyncio.Queue keeps its items in ``_queue``: look, without taking any.
    pending = getattr(queue, "_queue", ()) if queue is not None else ()
    return any(message.get("type") == "websocket.disconnect" for message in pending)


# A sender that can wait (a history replay) waits while more than half of
# MAX_SEND_BACKLOG is queued; a client that takes nothing for this long is closed.
DRAIN_TIMEOUT = 10.0
_NO_LIMIT = 1 << 62


class WebSocket:
    """A WebSocket connection with the Nexios (Starlette) API."""

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "websocket"
        self.scope = fill_scope(scope)
        self._receive = receive
        self._send = send
        self._queue = _receive_queue(receive)
        if self._queue is not None:
            _stamp_arrivals(self._queue)
        self.client_state = WebSocketState.CONNECTING
        self.application_state = WebSocketState.CONNECTING
        self.last_receive = time.monotonic()
        # Channels created on this socket, so that they leave their groups when it ends.
        self.channels: list[Channel] = []
        self._headers: Headers | None = None
        self._limiter: FrameLimiter | None = None
        self._frame_send: Send | None = None
        # Under daphne: the protocol, and the transport buffer checked after each frame sent.
        self._protocol = _daphne_protocol(send)
        self._buffer = _send_buffer(self._protocol) if self._protocol is not None else None
        limit = get_config()["MAX_SEND_BACKLOG"]
        self._max_backlog: int = int(limit) if limit is not None else _NO_LIMIT

    # Connection details -------------------------------------------------

    def __getitem__(self, key: str) -> typing.Any:
        """Return a scope key (``ws["path"]``), as Nexios's connections allow."""
        return self.scope[key]

    @property
    def client(self) -> Address:
        """The client's host and port (``("", 0)`` when the server gives none)."""
        host, port = self.scope.get("client") or ("", 0)
        return Address(str(host), int(port or 0))

    @property
    def headers(self) -> Headers:
        """Request headers, names lower-cased."""
        if self._headers is None:
            self._headers = Headers.from_scope(self.scope)
        return self._headers

    @property
    def path_params(self) -> dict[str, typing.Any]:
        """Parameters captured from the route path."""
        return typing.cast(dict[str, typing.Any], self.scope["path_params"])

    @property
    def query_params(self) -> QueryParams:
        """Query-string parameters: ``get`` gives the last value, ``getlist`` every one."""
        params = self.scope["query_params"]
        return params if isinstance(params, QueryParams) else QueryParams(self.scope["query_string"])

    @property
    def url(self) -> URL:
        """The full URL the client connected to (a ``str`` with ``.path``, ``.query``, ...)."""
        return URL.from_scope(self.scope)

    @property
    def path(self) -> str:
        """The request path."""
        return str(self.scope.get("path", ""))

    @property
    def cookies(self) -> dict[str, str]:
        """Cookies sent with the handshake."""
        cookies: dict[str, str] = {}
        for chunk in self.headers.get("cookie", "").split(";"):
            key, _, value = chunk.partition("=")
            if key.strip() or value.strip():
                cookies[key.strip()] = value.strip()
        return cookies

    @property
    def state(self) -> State:
        """Per-connection state over the scope's ``"state"`` dict (``ws.state.user = ...``)."""
        return State(self.scope.setdefault("state", {}))

    @property
    def app(self) -> typing.Any:
        """The application serving this connection (``None`` outside one)."""
        return self.scope.get("app")

    @property
    def user(self) -> typing.Any:
        """The user set by Channels' ``AuthMiddlewareStack`` (``None`` without it)."""
        return self.scope.get("user")

    # ASGI messages -------------------------------------------------------

    async def receive(self) -> Message:
        """Receive the next ASGI message, enforcing valid state transitions."""
        if self.client_state == WebSocketState.CONNECTING:
            message = await self._receive()
            if message["type"] != "websocket.connect":
                raise RuntimeError(f'Expected "websocket.connect", got {message["type"]!r}')
            self.client_state = WebSocketState.CONNECTED
            return message
        if self.client_state == WebSocketState.CONNECTED:
            while True:
                message = await self._receive()
                message_type = message["type"]
                if message_type == "websocket.disconnect":
                    self.client_state = WebSocketState.DISCONNECTED
                    self.application_state = WebSocketState.DISCONNECTED
                    return message
                if message_type != "websocket.receive":
                    raise RuntimeError(f"Unexpected ASGI message {message_type!r}")
                self.last_receive = time.monotonic()
                if self._limiter is None:
                    self._limiter = FrameLimiter()
                verdict = self._limiter.check(message, message.get(ARRIVED))
                if verdict is None:
                    (metrics.IN_TEXT if message.get("text") is not None else metrics.IN_BYTES).inc()
                    return message
                if isinstance(verdict, str):  # DROP
                    metrics.RATE_LIMITED.labels("drop").inc()
                    await self.send_text('{"type":"error","error":"rate_limited"}')
                    continue
                code, reason = verdict
                metrics.RATE_LIMITED.labels("close" if code == 1008 else "too_big").inc()
                await self.close(code, reason)
                raise WebSocketDisconnect(code, reason)
        raise RuntimeError('Cannot call "receive" once a disconnect message has been received.')

    async def send(self, message: Message) -> None:
        """Send an ASGI message, enforcing valid state transitions."""
        message_type = message["type"]
        if self.application_state == WebSocketState.CONNECTING:
            if message_type not in {"websocket.accept", "websocket.close"}:
                raise RuntimeError(f'Expected "websocket.accept" or "websocket.close", got {message_type!r}')
            self.application_state = (
                WebSocketState.DISCONNECTED if message_type == "websocket.close" else WebSocketState.CONNECTED
            )
            await self._send(message)
        elif self.application_state == WebSocketState.CONNECTED:
            await self._after_own_broadcasts()
            if message_type not in {"websocket.send", "websocket.close"}:
                raise RuntimeError(f'Expected "websocket.send" or "websocket.close", got {message_type!r}')
            if message_type == "websocket.close":
                self.application_state = WebSocketState.DISCONNECTED
                await self._send(message)
                return
            try:
                await self._send(message)
                (metrics.OUT_TEXT if message.get("text") is not None else metrics.OUT_BYTES).inc()
            except Exception as exc:
                # The client's close can reach us after the server's transport is
                # gone (autobahn raises Disconnected); a late frame is not an error,
                # and frames the client sent before closing must still be handled.
                logger.debug("Send on a closing socket failed: %r", exc)
            buffer = self._buffer
            if buffer is not None and self._max_backlog < (
                len(buffer.dataBuffer) - buffer.offset + buffer._tempDataLen
            ):
                self._backlog_exceeded()
        elif self.client_state == WebSocketState.DISCONNECTED:
            raise WebSocketDisconnect(1000, "The client has disconnected")
        else:
            raise RuntimeError('Cannot call "send" once a close message has been sent.')

    async def accept(
        self, subprotocol: str | None = None, headers: Iterable[tuple[bytes, bytes]] | None = None
    ) -> None:
        """Accept the connection (waiting for the client's connect message first).

        Raises ``WebSocketDisconnect`` (1006) when the client already gave up
        (closed while the handshake waited): nothing after ``accept`` runs for it.
        """
        if self.client_state == WebSocketState.CONNECTING:
            await self.receive()
        if self.application_state == WebSocketState.CONNECTING and _client_gone(self._send, self._queue):
            self.client_state = WebSocketState.DISCONNECTED
            self.application_state = WebSocketState.DISCONNECTED
            metrics.ABANDONED.inc()
            logger.info("Handshake from %s:%s abandoned by the client before accept", *self.client)
            raise WebSocketDisconnect(1006, "Client left before the handshake completed")
        message: Message = {"type": "websocket.accept", "subprotocol": subprotocol}
        if headers:
            message["headers"] = list(headers)
        await self.send(message)

    @staticmethod
    def _raise_on_disconnect(message: Message) -> None:
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(int(message.get("code") or 1000), message.get("reason"))

    def _require_connected(self) -> None:
        if self.application_state != WebSocketState.CONNECTED:
            if self.application_state == WebSocketState.DISCONNECTED:
                raise WebSocketDisconnect(1000, "connection closed")
            raise RuntimeError('WebSocket is not connected. Need to call "accept" first.')

    async def _receive_frame(self) -> Message:
        self._require_connected()
        message = await self.receive()
        self._raise_on_disconnect(message)
        return message

    async def receive_text(self) -> str:
        """Receive a text frame; a binary frame closes the socket with 1003."""
        message = await self._receive_frame()
        text = message.get("text")
        if text is None:
            await self.close(1003, "Expected a text frame")
            raise WebSocketDisconnect(1003, "Expected a text frame")
        return typing.cast(str, text)

    async def receive_bytes(self) -> bytes:
        """Receive a binary frame; a text frame closes the socket with 1003."""
        message = await self._receive_frame()
        data = message.get("bytes")
        if data is None:
            await self.close(1003, "Expected a binary frame")
            raise WebSocketDisconnect(1003, "Expected a binary frame")
        return typing.cast(bytes, data)

    async def receive_json(self, mode: str = "text") -> typing.Any:
        """Receive a frame and parse it as JSON; invalid JSON raises ``json.JSONDecodeError``."""
        if mode not in {"text", "binary"}:
            raise RuntimeError('The "mode" argument should be "text" or "binary".')
        message = await self._receive_frame()
        text = message.get("text")
        if text is None:
            raw = message.get("bytes") or b""
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise json.JSONDecodeError(f"Frame is not UTF-8: {exc}", "", 0) from exc
        return loads(text)

    async def iter_text(self) -> typing.AsyncIterator[str]:
        """Yield text frames until the client disconnects."""
        try:
            while True:
                yield await self.receive_text()
        except WebSocketDisconnect:
            pass

    async def iter_bytes(self) -> typing.AsyncIterator[bytes]:
        """Yield binary frames until the client disconnects."""
        try:
            while True:
                yield await self.receive_bytes()
        except WebSocketDisconnect:
            pass

    async def iter_json(self) -> typing.AsyncIterator[typing.Any]:
        """Yield parsed JSON frames until the client disconnects."""
        try:
            while True:
                yield await self.receive_json()
        except WebSocketDisconnect:
            pass

    async def send_text(self, data: str) -> None:
        """Send a text frame."""
        await self.send({"type": "websocket.send", "text": data})

    async def send_bytes(self, data: bytes) -> None:
        """Send a binary frame."""
        await self.send({"type": "websocket.send", "bytes": data})

    async def send_json(self, data: typing.Any, mode: str = "text") -> None:
        """Serialize ``data`` as JSON and send it as a text (or binary) frame."""
        if mode not in {"text", "binary"}:
            raise RuntimeError('The "mode" argument should be "text" or "binary".')
        text = dumps(data)
        if mode == "text":
            await self.send({"type": "websocket.send", "text": text})
        else:
            await self.send({"type": "websocket.send", "bytes": text.encode("utf-8")})

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        """Close the connection; closing twice is a no-op."""
        if self.application_state == WebSocketState.DISCONNECTED:
            return
        await self._after_own_broadcasts()
        if self.application_state == WebSocketState.CONNECTED and _daphne_close(self._send, code, reason):
            self.application_state = WebSocketState.DISCONNECTED
            return
        await self.send({"type": "websocket.close", "code": code, "reason": reason or ""})

    async def _after_own_broadcasts(self) -> None:
        # Saved broadcasts to this socket's rooms that the writer accepted but has
        # not stored yet reach the socket first: a handler that broadcasts, then
        # replies or closes, is seen in that order, as with Nexios.
        if not self.channels:
            return
        hub = current_hub()
        if hub is not None and hub.writer.pending:
            await hub.writer.flush_rooms({room for channel in self.channels for room in channel.groups})

    def is_connected(self) -> bool:
        """Whether both sides still consider the connection open."""
        return (
            self.client_state == WebSocketState.CONNECTED
            and self.application_state == WebSocketState.CONNECTED
        )

    async def send_frame(self, message: Message) -> bool:
        """Send a prepared ``websocket.send`` message if open; return whether it was sent."""
        if self.application_state != WebSocketState.CONNECTED:
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
            _daphne_close(self._send, 1008, "Send backlog exceeded")
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
