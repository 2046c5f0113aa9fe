"""``WebSocketEndpoint``: a class-based handler that is also a Channels consumer."""

from __future__ import annotations

import json
import logging
import typing
import uuid

from channels.consumer import AsyncConsumer
from channels.db import database_sync_to_async

from ..encoding import loads
from ..engine import Hub
from ..exceptions import HistoryUnavailable, RoomAccessDenied, WebSocketException
from ._asgi import passes_through
from ._functions import FunctionConsumer, Handler
from ._presence import default_presence_key
from ._serving import close_code_for, finish, leave_now, serve
from .base import Message, Receive, Scope, Send, WebSocket, WebSocketState
from .channels import Channel, ChannelBox, RemoteChannel, resume_point
from .utils import (
    WS_1000_NORMAL_CLOSURE,
    WS_1001_GOING_AWAY,
    WS_1003_UNSUPPORTED_DATA,
    WS_1013_TRY_AGAIN_LATER,
    GroupSendStatusEnum,
    PayloadTypeEnum,
)

if typing.TYPE_CHECKING:
    from ._routes import WebsocketRoute

__all__ = ["FunctionConsumer", "Handler", "WebSocketConsumer", "WebSocketEndpoint"]

logger = logging.getLogger("nexios_compat.consumers")


class UnsupportedData(Exception):
    """A frame did not match the endpoint's ``encoding``."""


class WebSocketConsumer(AsyncConsumer):
    """Nexios's class-based endpoint, running as a Channels consumer (one per socket)."""

    encoding: str | None = None
    # Inactivity TTL of ``self.channel`` in seconds (None: never expires).
    expires: int | float | None = None
    # Who may join rooms (checked by ``authorize`` before any history is sent).
    login_required: bool = False
    permission_required: str | tuple[str, ...] | None = None
    # Live presence: members get presence_state/presence_diff events (JSON encoding).
    presence: bool = False

    def __init__(
        self,
        logging_enabled: bool = True,
        logger: logging.Logger | None = None,
        **kwargs: typing.Any,
    ):
        # Nexios's signature. Handlers may log through ``self.logger``; unlike
        # Nexios we log no connection or message at INFO ourselves, so
        # ``logging_enabled`` is kept for code that reads it. ``**kwargs`` takes
        # what ``as_asgi(**initkwargs)`` passes to every Channels consumer.
        self.logging_enabled = logging_enabled
        self.logger = logger or logging.getLogger("nexios_compat.consumers")
        self.channel: Channel | None = None
        self.websocket: WebSocket | None = None

    @classmethod
    def as_route(cls, path: str) -> WebsocketRoute:
        """Return a route for ``app.add_ws_route`` / ``router.add_ws_route``."""
        from ._routes import WebsocketRoute

        return WebsocketRoute(path, cls)

    @property
    def payload_type(self) -> PayloadTypeEnum:
        """The payload type of ``self.channel``, from ``encoding``."""
        if self.encoding == "json":
            return PayloadTypeEnum.JSON
        if self.encoding == "bytes":
            return PayloadTypeEnum.BYTES
        return PayloadTypeEnum.TEXT

    @passes_through
    def __call__(self, scope: Scope, receive: Receive, send: Send) -> typing.Awaitable[None]:
        """Run one connection: on_connect, a receive loop with on_receive, on_disconnect."""
        if self.encoding not in {None, "text", "bytes", "json"}:
            raise ValueError(f"Unsupported encoding {self.encoding!r}: use None, 'text', 'bytes' or 'json'")
        self.scope = scope
        websocket = self.websocket = WebSocket(scope, receive, send)
        return serve(websocket, self._begin)

    def _begin(self, hub: Hub, websocket: WebSocket) -> typing.Coroutine[typing.Any, typing.Any, None]:
        self.channel_layer = hub.layer
        self.channel = Channel(websocket, self.payload_type, expires=self.expires)
        return self._handle_connection(hub, websocket, self.channel)

    async def _handle_connection(self, hub: Hub, websocket: WebSocket, channel: Channel) -> None:
        try:
            try:
                close_code = await self._dispatch(hub, websocket, channel)
            except Exception as exc:
                close_code = await close_code_for(websocket, exc, type(self).__name__)
        except BaseException:
            # Cancellation (or a failure to close) ends the handler here: its
            # rooms are left before the exception travels on.
            leave_now(hub, websocket)
            raise
        try:
            if websocket.client_state != WebSocketState.CONNECTING:
                await self.on_disconnect(websocket, close_code)
        except Exception:
            logger.exception("%s.on_disconnect failed", type(self).__name__)
        finally:
            await finish(hub, websocket, close_code)

    async def _dispatch(self, hub: Hub, websocket: WebSocket, channel: Channel) -> int:
        """on_connect, then on_receive per frame until the socket closes; return the close code."""
        await self._degrading(websocket, self.on_connect(websocket))
        while websocket.application_state == WebSocketState.CONNECTED:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return int(message.get("code") or WS_1000_NORMAL_CLOSURE)
            try:
                data = self._decode(message)
            except UnsupportedData as exc:
                await websocket.close(WS_1003_UNSUPPORTED_DATA, str(exc))
                return WS_1003_UNSUPPORTED_DATA
            channel.touch()
            await self._degrading(websocket, self.on_receive(websocket, data))
        # The server closed the socket (e.g. with 1001 when it stops).
        return WS_1001_GOING_AWAY if hub.stopping else WS_1000_NORMAL_CLOSURE

    async def _degrading(self, websocket: WebSocket, hook: typing.Awaitable[None]) -> None:
        # A database outage is nobody's fault on this socket: tell the client
        # its saved send failed and keep the connection, instead of a 1011.
        try:
            await hook
        except HistoryUnavailable as exc:
            if websocket.application_state != WebSocketState.CONNECTED:
                raise
            logger.warning("%s: history unavailable; sent an error frame", type(self).__name__)
            if not exc.reported:
                await websocket.send_text(exc.client_frame)

    def _decode(self, message: Message) -> typing.Any:
        text, data = message.get("text"), message.get("bytes")
        if self.encoding == "text":
            if text is None:
                raise UnsupportedData("Expected a text frame")
            return text
        if self.encoding == "bytes":
            if data is None:
                raise UnsupportedData("Expected a binary frame")
            return data
        if self.encoding == "json":
            if text is None:
                raise UnsupportedData("Expected a JSON text frame")
            try:
                return loads(text)
            except json.JSONDecodeError as exc:
                raise UnsupportedData("Malformed JSON") from exc
        return text if text is not None else data

    async def decode(self, websocket: WebSocket, message: Message) -> typing.Any:
        """Decode a frame by ``encoding``; close with 1003 and raise when it does not fit."""
        try:
            return self._decode(message)
        except UnsupportedData as exc:
            await websocket.close(WS_1003_UNSUPPORTED_DATA, str(exc))
            raise RuntimeError(str(exc)) from exc

    # Hooks ------------------------------------------------------------------

    async def on_connect(self, websocket: WebSocket) -> None:
        """Accept the connection (override to authenticate, join groups, ...)."""
        await websocket.accept()

    async def on_receive(self, websocket: WebSocket, data: typing.Any) -> None:
        """Handle one decoded frame (override)."""

    async def on_disconnect(self, websocket: WebSocket, close_code: int) -> None:
        """Handle the end of the connection (override); groups are left afterwards."""

    # Rooms ------------------------------------------------------------------

    def _require_channel(self) -> Channel:
        if self.channel is None:
            raise RuntimeError("The endpoint has no channel outside a connection")
        return self.channel

    async def authorize(self, websocket: WebSocket, group_name: str) -> bool:
        """Return whether this connection may join ``group_name`` (override for per-room rules).

        The default honours ``login_required`` and ``permission_required``.
        """
        user = websocket.user
        if self.permission_required:
            if user is None:
                return False
            perms = (
                (self.permission_required,)
                if isinstance(self.permission_required, str)
                else tuple(self.permission_required)
            )
            return bool(await database_sync_to_async(user.has_perms)(perms))
        if self.login_required:
            return bool(user is not None and user.is_authenticated)
        return True

    async def join_group(self, group_name: str) -> None:
        """Add this connection's channel to a group (replaying history after ``?since=N``).

        Raises ``RoomAccessDenied`` (the socket closes with 4403) when ``authorize`` refuses.
        When the replay cannot be read (the database is down), the client gets the
        ``history_unavailable`` error frame and a 1013 close, and the channel is not left
        in the room (live messages after a gap would break the resume promise).
        """
        channel = self._require_channel()
        assert self.websocket is not None
        if not await self.authorize(self.websocket, group_name):
            raise RoomAccessDenied(f"Not allowed to join {group_name!r}")
        if self.presence and channel.presence is None:
            await ChannelBox.track_presence(channel, self.presence_key(self.websocket))
        try:
            await ChannelBox.add_channel_to_group(channel, group_name)
        except HistoryUnavailable:
            # The replay the client asked for (?since=) cannot be read now, and the
            # channel is not in the room: close, so that it reconnects and resumes later.
            if self.websocket.application_state == WebSocketState.CONNECTED:
                await self.websocket.send_text(HistoryUnavailable.frame)
            raise WebSocketException(WS_1013_TRY_AGAIN_LATER, "History unavailable; resume later") from None

    def presence_key(self, websocket: WebSocket) -> str:
        """The presence key of this connection (override to choose).

        By default: the user's pk, else ``channel.metadata["username"]``, else the channel id.
        """
        return default_presence_key(self._require_channel())

    async def leave_group(self, group_name: str) -> None:
        """Remove this connection's channel from a group."""
        await ChannelBox.remove_channel_from_group(self._require_channel(), group_name)

    async def broadcast(
        self,
        payload: typing.Any,
        group_name: str = "default",
        save_history: bool = False,
        client_id: str | None = None,
    ) -> GroupSendStatusEnum:
        """Send a payload to every member of a group (saving it first if asked; once per ``client_id``)."""
        sender = self.channel.id if self.channel is not None else None
        return await ChannelBox.group_send(
            group_name, payload, save_history=save_history, sender=sender, client_id=client_id
        )

    async def send_to(self, channel_id: uuid.UUID | str, payload: typing.Any) -> bool:
        """Send a payload to one channel, wherever it is connected."""
        return await ChannelBox.send_to(channel_id, payload)

    async def group(self, group_name: str) -> list[Channel | RemoteChannel]:
        """Return the members of a group, in every process."""
        return await ChannelBox.group(group_name)

    @property
    def resume_from(self) -> int | None:
        """The ``?since=N`` the client connected with, if any."""
        return resume_point(self.websocket) if self.websocket is not None else None


class WebSocketEndpoint(WebSocketConsumer):
    """The name the Nexios documents use for ``WebSocketConsumer``."""
