"""History over HTTP: pages of a room's saved messages for "load older", under the room's rules.

Mount it alone (the site's room policy decides) or with an endpoint whose
``authorize`` is checked as well::

    path("rooms/<str:room>/history/", HistoryView.as_view()),
    path("rooms/<str:room>/history/", HistoryView.as_view(endpoint=RoomEndpoint)),

``GET ?before=<seq>&limit=<n>`` answers ``{"room", "epoch", "last_seq",
"messages", "before"}``: up to ``limit`` (at most ``max_limit``) messages with
``seq < before`` (the newest ones without ``before``), **oldest first** so a
page can be prepended as is; ``before`` is the value that asks for the page
older than this one, ``null`` when there is none. Each message is ``{"seq",
"created", "kind", "payload"}``: JSON payloads as JSON, text as a string,
bytes base64-encoded. A refusal by the room policy's ``read`` rule or by the
endpoint's ``authorize`` (which applies ``login_required`` and
``permission_required``) is a 403, as the socket's 4403; a room whose rule
keeps no history is a 404; a malformed parameter is a 400.
"""

from __future__ import annotations

import base64
import typing

from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import View

from .policy import get_policy
from .rooms import check_group_name
from .stores.services import HistoryService
from .types import ChannelMessageDC
from .websockets.base import WebSocket
from .websockets.consumers import WebSocketConsumer

# Greater than any seq: reads the room's position without messages.
_NO_MESSAGES_AFTER = 2**62


class HistoryView(View):
    """A JSON page of a room's saved messages, under the room policy's ``read`` rule."""

    endpoint: type[WebSocketConsumer] | None = None
    default_limit = 50
    max_limit = 200
    # Older pages change only when messages are deleted: browsers may keep them briefly.
    older_page_max_age = 60

    async def get(self, request: HttpRequest, room: str) -> HttpResponse:
        """Return one page of ``room``'s history."""
        if self.endpoint is not None and not (
            isinstance(self.endpoint, type) and issubclass(self.endpoint, WebSocketConsumer)
        ):
            raise ImproperlyConfigured("HistoryView's endpoint must be a WebSocketEndpoint subclass")
        try:
            check_group_name(room)
            before = _int_param(request, "before", None)
            limit = min(max(_int_param(request, "limit", self.default_limit) or 0, 1), self.max_limit)
        except ValueError as exc:
            return _json({"error": str(exc)}, status=400)
        user = await request.auser()
        policy = get_policy()
        # The room's rules first: an endpoint's authorize() is an extra hook, never the only gate.
        if not await policy.allows("read", room, user=user, request=request):
            return _json({"error": "Not allowed to read this room"}, status=403)
        if self.endpoint is not None and not await self.endpoint().authorize(
            await _as_websocket(request, room), room
        ):
            return _json({"error": "Not allowed to read this room"}, status=403)
        if not policy.rule_for(room).history:
            return _json({"error": "This room keeps no history"}, status=404)
        history = HistoryService()
        position = await history.read(room, _NO_MESSAGES_AFTER)
        newest_first = await history.page(room, before, limit + 1)
        page = list(reversed(newest_first[:limit]))
        more = len(newest_first) > limit
        body = {
            "room": room,
            "epoch": position.epoch,
            "last_seq": position.last_seq,
            "messages": [_message(message) for message in page],
            "before": page[0].seq if page and more else None,
        }
        response = _json(body)
        # Pages are per user (room rules); the newest page changes with every message.
        age = self.older_page_max_age if before is not None else 0
        response["Cache-Control"] = f"private, max-age={age}" if age else "private, no-cache"
        response["Vary"] = "Cookie"
        return response


def _int_param(request: HttpRequest, name: str, default: int | None) -> int | None:
    raw = request.GET.get(name)
    if raw is None or raw == "":
        return default
    # str.isdigit() admits "²"; and the database holds 63 bits: past that, the same as unbounded.
    if not (raw.isascii() and raw.isdigit()):
        raise ValueError(f"{name} must be a non-negative integer")
    return min(int(raw), _NO_MESSAGES_AFTER)


def _json(body: dict[str, typing.Any], status: int = 200) -> JsonResponse:
    response = JsonResponse(body, status=status)
    response["X-Content-Type-Options"] = "nosniff"
    return response


def _message(message: ChannelMessageDC) -> dict[str, typing.Any]:
    payload = message.payload
    if isinstance(payload, bytes):
        kind, payload = "bytes", base64.b64encode(payload).decode("ascii")
    else:
        kind = "text" if isinstance(payload, str) else "json"
    return {"seq": message.seq, "created": message.created.isoformat(), "kind": kind, "payload": payload}


async def _as_websocket(request: HttpRequest, room: str) -> WebSocket:
    """The request as the socket ``authorize`` expects: its user, headers, query and path."""
    scope = {
        "type": "websocket",
        "path": request.path,
        "query_string": request.META.get("QUERY_STRING", "").encode("latin-1"),
        "headers": [
            (key[5:].replace("_", "-").lower().encode("latin-1"), str(value).encode("latin-1"))
            for key, value in request.META.items()
            if key.startswith("HTTP_")
        ],
        "user": await request.auser(),
        "path_params": {"room": room},
    }

    async def nothing(*args: typing.Any) -> typing.Any:
        raise RuntimeError("authorize() cannot use the socket of an HTTP request")

    return WebSocket(scope, nothing, nothing)
