"""``WebSocket``: what handlers receive, a thin state machine over ASGI messages."""

from __future__ import annotations

import contextvars
import json
import logging
import time
import typing
from collections.abc import Iterable

from .. import metrics
from ..conf import get_config
from ..encoding import dumps, loads
from ..engine import LocalMember, current_hub
from ..exceptions import HistoryUnavailable
from ..objects import URL, Address, Headers, QueryParams, State
from ._asgi import Message, Receive, Scope, Send, WebSocketDisconnect, WebSocketState, fill_scope
from ._backlog import NO_LIMIT, SendFlow
from ._daphne import (
    ARRIVED,
    client_gone,
    daphne_close,
    daphne_connection,
    daphne_protocol,
    prepared_transport,
    receive_queue,
    send_buffer,
    stamp_arrivals,
    trim_queue,
)
from ._limits import CHECKED, VERDICT, ArrivalGate, FrameLimiter, limit_action

logger = logging.getLogger("nexios_compat.websockets")

# The socket whose handler is running. A function handler's ``group_send`` carries
# no sender, yet what it publishes comes from its client and must pass the room's
# rules; so must what it reads of history. Set by the consumers when they start
# serving a socket, in the connection's own task, so it never leaks into another.
# HTTP views, admin and commands never set it: their sends and reads are the
# server's own and trusted.
current_websocket: contextvars.ContextVar[WebSocket | None] = contextvars.ContextVar(
    "nexios_compat_current_websocket", default=None
)

__all__ = ["Message", "Receive", "Scope", "Send", "WebSocket", "WebSocketDisconnect", "WebSocketState"]


class WebSocket(SendFlow):
    """A WebSocket connection with the Nexios (Starlette) API."""

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "websocket"
        self.scope = fill_scope(scope)
        self._receive = receive
        self._send = send
        self._queue = receive_queue(receive)
        if self._queue is not None:
            # Frames are judged as they arrive, so a busy handler cannot make us hold them.
            stamp_arrivals(self._queue, ArrivalGate(self._close_on_arrival).admit)
            trim_queue(self._queue)
        self.client_state = WebSocketState.CONNECTING
        self.application_state = WebSocketState.CONNECTING
        self.last_receive = time.monotonic()
        # Channels created on this socket, so that they leave their groups when it ends.
        self.channels: list[LocalMember] = []
        self._headers: Headers | None = None
        self._limiter: FrameLimiter | None = None
        self._frame_send: Send | None = None
        # Under daphne: the protocol, and the transport buffer checked after each frame sent.
        self._protocol = daphne_protocol(send)
        self._buffer = send_buffer(self._protocol) if self._protocol is not None else None
        self._direct: typing.Any = None  # set once accepted (see SendFlow.write_prepared)
        self._direct_limit = 0
        self._connection: dict[str, typing.Any] | None = None
        limit = get_config()["MAX_SEND_BACKLOG"]
        self._max_backlog: int = int(limit) if limit is not None else NO_LIMIT

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
                if VERDICT in message:
                    verdict = message[VERDICT]
                elif message.get(CHECKED):
                    verdict = None
                else:  # a server whose queue we could not reach: judged now
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
                metrics.RATE_LIMITED.labels(limit_action(code, reason)).inc()
                await self.close(code, reason)
                raise WebSocketDisconnect(code, reason)
        raise RuntimeError('Cannot call "receive" once a disconnect message has been received.')

    def _close_on_arrival(self, code: int, reason: str) -> None:
        """Under daphne, send the close frame now, while the handler may still be busy."""
        if self._protocol is not None:
            daphne_close(self._send, code, reason)

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
            if message_type == "websocket.accept" and self._protocol is not None:
                self._open_direct()
        elif self.application_state == WebSocketState.CONNECTED:
            await self._after_own_broadcasts(raise_failed=message_type == "websocket.send")
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

    def _open_direct(self) -> None:
        """Under daphne, after the handshake: let broadcasts write prepared frames (``write_prepared``)."""
        direct = prepared_transport(self._protocol)
        if direct is not None:
            self._connection = daphne_connection(self._send, self._protocol)
            self._direct, self._direct_limit = direct

    async def accept(
        self, subprotocol: str | None = None, headers: Iterable[tuple[bytes, bytes]] | None = None
    ) -> None:
        """Accept the connection (waiting for the client's connect message first).

        Raises ``WebSocketDisconnect`` (1006) when the client already gave up
        (closed while the handshake waited): nothing after ``accept`` runs for it.
        """
        if self.client_state == WebSocketState.CONNECTING:
            await self.receive()
        if self.application_state == WebSocketState.CONNECTING and client_gone(self._send, self._queue):
            self.client_state = WebSocketState.DISCONNECTED
            self.application_state = WebSocketState.DISCONNECTED
            metrics.ABANDONED.inc()
            logger.info("Handshake from %s:%s abandoned by the client before accept", *self.client)
            raise WebSocketDisconnect(1006, "Client left before the handshake completed")
        # The exact message Nexios sends, ``"headers": []`` included.
        message = {"type": "websocket.accept", "subprotocol": subprotocol, "headers": list(headers or [])}
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

    async def receive_text(self) -> str:
        """Receive a text frame; a binary frame closes the socket with 1003."""
        # Inline, not a helper coroutine: an idle socket waits here, one frame fewer.
        self._require_connected()
        message = await self.receive()
        self._raise_on_disconnect(message)
        text = message.get("text")
        if text is None:
            await self.close(1003, "Expected a text frame")
            raise WebSocketDisconnect(1003, "Expected a text frame")
        return typing.cast(str, text)

    async def receive_bytes(self) -> bytes:
        """Receive a binary frame; a text frame closes the socket with 1003."""
        # Inline, not a helper coroutine: an idle socket waits here, one frame fewer.
        self._require_connected()
        message = await self.receive()
        self._raise_on_disconnect(message)
        data = message.get("bytes")
        if data is None:
            await self.close(1003, "Expected a binary frame")
            raise WebSocketDisconnect(1003, "Expected a binary frame")
        return typing.cast(bytes, data)

    async def receive_json(self, mode: str = "text") -> typing.Any:
        """Receive a frame and parse it as JSON; invalid JSON raises ``json.JSONDecodeError``."""
        if mode not in {"text", "binary"}:
            raise RuntimeError('The "mode" argument should be "text" or "binary".')
        # Inline, not a helper coroutine: an idle socket waits here, one frame fewer.
        self._require_connected()
        message = await self.receive()
        self._raise_on_disconnect(message)
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
        if self.application_state == WebSocketState.CONNECTED and daphne_close(self._send, code, reason):
            self.application_state = WebSocketState.DISCONNECTED
            return
        await self.send({"type": "websocket.close", "code": code, "reason": reason or ""})

    async def _after_own_broadcasts(self, raise_failed: bool = False) -> None:
        # Saved broadcasts to this socket's rooms that the writer accepted but has
        # not stored yet reach the socket first: a handler that broadcasts, then
        # replies or closes, is seen in that order, as with Nexios.
        if not self.channels:
            return
        hub = current_hub()
        if hub is not None:
            await hub.flush_rooms({room for channel in self.channels for room in channel.groups})
        if raise_failed:
            self._raise_failed_saves()

    def _raise_failed_saves(self) -> None:
        # One of this socket's saved sends was accepted, then could not be stored
        # (the client got the error frame then). Its next reply must not read as
        # if the save had worked (an "ok" after a lost message): it raises instead, once.
        failed = sum(channel.failed_saves for channel in self.channels)
        if failed:
            for channel in self.channels:
                channel.failed_saves = 0
            raise HistoryUnavailable(f"{failed} saved send(s) of this socket were not stored", reported=True)

    def is_connected(self) -> bool:
        """Whether both sides still consider the connection open."""
        return (
            self.client_state == WebSocketState.CONNECTED
            and self.application_state == WebSocketState.CONNECTED
        )
