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

``TicketView`` (``POST``) gives the logged-in user a ticket for a socket
without cookies (docs/tickets.md).
"""

from __future__ import annotations

import base64
import json
import typing

from asgiref.sync import async_to_sync
from django.contrib.auth import SESSION_KEY
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import View

from .conf import get_config
from .policy import get_policy
from .rooms import check_group_name
from .security import parse_origin
from .stores.services import HistoryService
from .tickets import issue_ticket
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
            await request_as_websocket(request, room), room
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


async def request_as_websocket(request: HttpRequest, room: str) -> WebSocket:
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


# A ticket travels in a URL: a bound on its rooms is a bound on its length.
MAX_TICKET_ROOMS = 50


class TicketView(View):
    """``POST``: a ticket (``{"ticket", "expires_in", "rooms"}``) for the logged-in user's next socket.

    Rooms asked for (form fields ``room``, or JSON ``{"rooms": [...]}``) limit the
    ticket to them, and each must be one the room policy lets the user join.
    CSRF-protected like any Django POST; a site whose API authenticates
    otherwise wraps the view (``csrf_exempt``, its own auth setting
    ``request.user``).
    """

    http_method_names = ["post", "options"]

    def post(self, request: HttpRequest) -> HttpResponse:
        """Issue the ticket: 401 when logged out, 403 for a room the policy refuses, 400 for a bad room."""
        user = request.user
        if not user.is_authenticated:
            return self._cors(request, _json({"error": "Log in first"}, status=401))
        try:
            rooms = self._rooms(request)
        except ValueError as error:
            return self._cors(request, _json({"error": str(error)}, status=400))
        policy = get_policy()
        for room in rooms or ():
            if not async_to_sync(policy.allows)("join", room, user=user, request=request):
                return self._cors(request, _json({"error": f"Not allowed to join {room}"}, status=403))
        session = getattr(request, "session", None)
        # Bound to the session only when the session is what logged the user in (not a token).
        session_key = (
            session.session_key if session is not None and session.get(SESSION_KEY) == str(user.pk) else None
        )
        ticket = issue_ticket(user, session_key=session_key, rooms=rooms)
        response = _json({"ticket": ticket, "expires_in": get_config()["TICKET_MAX_AGE"], "rooms": rooms})
        response["Cache-Control"] = "no-store"
        return self._cors(request, response)

    def options(self, request: HttpRequest, *args: typing.Any, **kwargs: typing.Any) -> HttpResponse:
        """Answer a CORS preflight from an allowed origin."""
        response = self._cors(request, HttpResponse())
        if response.has_header("Access-Control-Allow-Origin"):
            response["Access-Control-Allow-Methods"] = "POST, OPTIONS"
            response["Access-Control-Allow-Headers"] = "Content-Type, X-CSRFToken, Authorization"
            response["Access-Control-Max-Age"] = "600"
        return response

    def _rooms(self, request: HttpRequest) -> list[str] | None:
        if request.content_type == "application/json":
            try:
                body = json.loads(request.body or b"{}")
            except ValueError:
                raise ValueError("The body is not JSON") from None
            rooms = body.get("rooms") if isinstance(body, dict) else None
            if rooms is not None and not (isinstance(rooms, list) and all(isinstance(r, str) for r in rooms)):
                raise ValueError("rooms must be a list of room names")
        else:
            rooms = request.POST.getlist("room") or None
        if rooms is None:
            return None
        if len(rooms) > MAX_TICKET_ROOMS:
            raise ValueError(f"At most {MAX_TICKET_ROOMS} rooms per ticket")
        for room in rooms:
            check_group_name(room)
        return sorted(set(rooms))

    def _cors(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        """Let a page on an ``ALLOWED_ORIGINS`` origin read the answer (with its cookies)."""
        response["Vary"] = "Origin" if not response.has_header("Vary") else response["Vary"] + ", Origin"
        origin = request.headers.get("Origin")
        allowed = {parse_origin(entry) for entry in get_config()["ALLOWED_ORIGINS"]}
        if origin and parse_origin(origin) in allowed - {None}:
            response["Access-Control-Allow-Origin"] = origin
            response["Access-Control-Allow-Credentials"] = "true"
        return response
