"""``RoomEventsView``: a room as a Server-Sent Events stream (GET) and sends by POST, under its rules.

Mount it beside the room's socket; the fallback of ``rooms.js`` uses both::

    path("rooms/<str:room>/events/", RoomEventsView.as_view()),

``GET`` streams what a socket with ``?envelope=1`` would receive (resume,
presence, broadcasts, acks), one event per frame; saved broadcasts carry
``id: <epoch>:<seq>`` so ``Last-Event-ID`` resumes as ``?since=&epoch=`` does.
``POST`` (JSON) sends a message as a socket's saved broadcast: with an
``"id"`` it is stored once and the answer is its ack.
"""

from __future__ import annotations

import asyncio
import contextlib
import typing
from collections.abc import AsyncIterator

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.views import View

from .. import engine, metrics
from ..conf import get_config
from ..encoding import ENVELOPE_EPOCH, ENVELOPE_NONE, ENVELOPE_SEQ, loads
from ..exceptions import HistoryUnavailable
from ..policy import get_policy
from ..rooms import check_group_name
from ..tickets import TicketRefused, redeem_ticket
from ..views import request_as_websocket
from ..websockets._presence import presence_meta
from ..websockets.base import current_websocket
from ..websockets.channels import ChannelBox, check_client_id
from ._member import StreamMember, event, parse_event_id

_TRUE = {"1", "true", "yes", "on"}
# Why streams end, as the sse_ended metric's reason label.
_ENDED = {"client gone": "client", "Send backlog exceeded": "backlog", "join failed": "join_failed"}


class RoomEventsView(View):
    """A room's events as ``text/event-stream``; ``POST`` sends like a socket's saved broadcast."""

    http_method_names = ["get", "post"]
    # Live presence: the stream is shown in the room's presence and gets its frames.
    presence: bool = False

    async def get(self, request: HttpRequest, room: str) -> HttpResponseBase:
        """Open the stream: 403 when the policy's ``join`` refuses, 400 for a bad room or position."""
        try:
            check_group_name(room)
        except ValueError as exc:
            return _json({"error": str(exc)}, status=400)
        user = await request.auser()
        if ticket := request.GET.get("ticket"):
            try:
                redeemed = await sync_to_async(redeem_ticket)(ticket)
            except TicketRefused:
                return _json({"error": "Ticket refused"}, status=403)
            if redeemed.rooms is not None and room not in redeemed.rooms:
                return _json({"error": "The ticket is not for this room"}, status=403)
            user = redeemed.user
        if not await get_policy().allows("join", room, user=user, request=request):
            return _json({"error": "Not allowed to join this room"}, status=403)
        since, epoch = _position(request)
        config = get_config()
        envelope = ENVELOPE_NONE
        if epoch is not None:
            envelope = ENVELOPE_EPOCH
        elif request.GET.get("envelope", "").lower() in _TRUE:
            envelope = ENVELOPE_SEQ
        member = StreamMember(
            user=user,
            metadata=self.metadata(request, user),
            envelope=envelope,
            max_queued=config["SSE_MAX_QUEUED"],
        )
        if self.presence:
            member.presence = (self.presence_key(request, member), presence_meta(member))
        hub = await engine.get_hub()
        hub.register(member)
        response = StreamingHttpResponse(
            _stream(hub, member, room, since, epoch, config["SSE_KEEPALIVE"]),
            content_type="text/event-stream",
        )
        response["Cache-Control"] = "no-cache, no-store"
        # nginx buffers proxied responses unless told not to: an event would wait for the buffer.
        response["X-Accel-Buffering"] = "no"
        return response

    async def post(self, request: HttpRequest, room: str) -> HttpResponse:
        """Send the JSON body to the room as a saved broadcast; with ``"id"``, answer its ack once stored."""
        try:
            check_group_name(room)
            data = loads(request.body.decode("utf-8") or "null")
            client_id = data.get("id") if isinstance(data, dict) else None
            check_client_id(client_id)
        except ValueError as exc:
            metrics.SSE_SENDS.labels("refused").inc()
            return _json({"error": str(exc)}, status=400)
        user = await request.auser()
        if not await get_policy().allows("publish", room, user=user, request=request):
            metrics.SSE_SENDS.labels("refused").inc()
            return _json({"type": "error", "error": "forbidden", "room": room}, status=403)
        payload = await self.payload(request, user, data)
        if payload is None:
            metrics.SSE_SENDS.labels("refused").inc()
            return _json({"type": "error", "error": "Not a message this room takes"}, status=400)
        hub = await engine.get_hub()
        # The sender is a member of no room that takes the ack (and the error frame) for this request.
        sender = StreamMember(user=user, max_queued=4)
        hub.register(sender)
        token = current_websocket.set(await request_as_websocket(request, room))
        try:
            await ChannelBox.group_send(
                room, payload, save_history=True, sender=sender.id, client_id=client_id
            )
            if client_id is None:
                metrics.SSE_SENDS.labels("accepted").inc()
                return _json({"type": "accepted", "room": room}, status=202)
            frame = await asyncio.wait_for(sender.next_frame(), get_config()["SSE_SEND_TIMEOUT"])
        except HistoryUnavailable:
            frame = None
        except TimeoutError:
            metrics.SSE_SENDS.labels("timeout").inc()
            return _json({"type": "error", "error": "Not stored in time; send it again"}, status=504)
        finally:
            current_websocket.reset(token)
            await hub.discard(sender)
        answer = loads(frame["text"]) if frame is not None and frame.get("text") else None
        if not (isinstance(answer, dict) and answer.get("type") == "ack"):
            metrics.SSE_SENDS.labels("unavailable").inc()
            return _json({"type": "error", "error": "history_unavailable"}, status=503)
        metrics.SSE_SENDS.labels("stored").inc()
        return _json(answer)

    def metadata(self, request: HttpRequest, user: typing.Any) -> dict[str, typing.Any]:
        """The stream's metadata, shown in presence metas; by default the user's name, else ``?username=``."""
        if user is not None and user.is_authenticated:
            return {"username": user.get_username()}
        name = request.GET.get("username")
        return {"username": name[:50]} if name else {}

    def presence_key(self, request: HttpRequest, member: StreamMember) -> str:
        """The presence key: the user's pk, else ``metadata["username"]``, else the stream's id."""
        user = member.user
        if user is not None and getattr(user, "is_authenticated", False):
            return str(user.pk)
        return str(member.metadata.get("username") or member.id)

    async def payload(self, request: HttpRequest, user: typing.Any, data: typing.Any) -> typing.Any:
        """What to broadcast for a POSTed body (override like ``on_receive``); None refuses it."""
        return data


async def _stream(
    hub: engine.Hub, member: StreamMember, room: str, since: int | None, epoch: str | None, keepalive: float
) -> AsyncIterator[bytes]:
    """Join, then write every queued frame as an event until the client goes or the member is shut."""
    metrics.SSE_STREAMS.inc()
    joining = asyncio.ensure_future(hub.join(member, room, since=since, epoch=epoch))
    joining.add_done_callback(lambda task: _joined(member, task))
    reason = "client gone"
    try:
        # A first chunk at once: the client knows the stream is open before anything happens.
        yield b"retry: 2000\n: open\n\n"
        while True:
            try:
                frame = await asyncio.wait_for(member.next_frame(), keepalive)
            except TimeoutError:
                yield b": keep-alive\n\n"
                continue
            if frame is None:
                reason = member.closed or "closed"
                break
            yield event(frame)
    finally:
        metrics.SSE_STREAMS.dec()
        metrics.SSE_ENDED.labels(_ENDED.get(reason, "closed")).inc()
        member.shut(reason)
        if not joining.done():
            joining.cancel()
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            hub.drop(member)  # cancelled (the client left): nothing that awaits from here on
            hub.registry.unregister(member)
        else:
            with contextlib.suppress(asyncio.CancelledError):
                await hub.discard(member)


def _joined(member: StreamMember, task: asyncio.Future[typing.Any]) -> None:
    if task.cancelled() or task.exception() is None:
        return
    # As a socket's resume that cannot be read: the error frame, then the end (the client retries).
    unavailable = isinstance(task.exception(), HistoryUnavailable)
    member.shut(
        "join failed", {"type": "websocket.send", "text": HistoryUnavailable.frame} if unavailable else None
    )


def _position(request: HttpRequest) -> tuple[int | None, str | None]:
    """``(since, epoch)`` from ``Last-Event-ID``, else ``?since=&epoch=`` (as a socket's)."""
    from_id = parse_event_id(request.headers.get("Last-Event-ID"))
    if from_id is not None:
        return from_id
    raw, epoch = request.GET.get("since"), request.GET.get("epoch")
    since = int(raw) if raw is not None and raw.isascii() and raw.isdigit() and len(raw) <= 18 else None
    return since, epoch[:32] if epoch is not None else None


def _json(body: dict[str, typing.Any], status: int = 200) -> JsonResponse:
    response = JsonResponse(body, status=status)
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "no-store"
    return response
