"""The example's pages: the rooms, one room, and a page to try the seed documents' sockets."""

import typing
from urllib.parse import quote

from django.db.models import Count, F
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.csrf import ensure_csrf_cookie

from nexios_compat.models import Room
from nexios_compat.sse import RoomEventsView

from .sockets import chat_message

# The seed documents' examples, as chat/sockets.py mounts them: path, a frame to send, what it does.
SEEDS = [
    ("/seeds/ws", "hello", "Text echo: answers “You said: …”."),
    ("/seeds/chat", '{"hello": "world"}', "JSON echo through process_message."),
    ("/seeds/info?x=1", "", "Sends your address, headers and query, then closes."),
    ("/seeds/safe", "not json", "JSON echo; invalid JSON gets an error reply, not a close."),
    ("/seeds/room/demo", '{"user": "ann", "message": "hi"}', "A function room: broadcast, saved."),
    ("/seeds/endpoint/demo", '{"user": "ann", "message": "hi"}', "ChatEndpoint: join/leave notices."),
    ("/seeds/chatroom/demo?username=ann", '{"type": "message", "content": "hi"}', "The complete chat room."),
    ("/seeds/channels/chat", '{"username": "ann"}', "Channel echo with a 30-minute expiry."),
    ("/seeds/channels/chat-with-heartbeat", '{"type": "heartbeat"}', "Heartbeats answer heartbeat_ack."),
]


def index(request: HttpRequest) -> HttpResponse:
    """List rooms with who is in them now and their last activity; a form to enter one."""
    if name := request.GET.get("room", "").strip().replace("/", "-"):
        url = reverse("chat:room", args=[name])
        username = request.GET.get("username", "").strip()
        return redirect(f"{url}?{urlencode({'username': username})}" if username else url)
    rooms = Room.objects.annotate(here=Count("members")).order_by(F("last_activity").desc(nulls_last=True))
    return render(request, "chat/index.html", {"rooms": rooms[:50], "seeds": SEEDS})


@ensure_csrf_cookie  # rooms.js's fallback sends by POST with the token from this cookie
def room(request: HttpRequest, room: str) -> HttpResponse:
    """A room: the last messages on joining, then live ones; anonymous visitors pick a name first."""
    saved = Room.objects.filter(name=room).annotate(here=Count("members")).first()
    if request.user.is_authenticated:
        username = request.user.get_username()
    else:
        username = request.GET.get("username", "").strip()[:50]
    # The page shows the newest 50 saved messages (rooms.js, over the history view), then live ones.
    config = {
        "room": room,
        "username": username,
        "socket": f"/ws/chat/{quote(room, safe='')}/",
        "history": reverse("chat:history", args=[room]),
        "events": reverse("chat:events", args=[room]),
    }
    context = {"room": room, "username": username, "here": saved.here if saved else 0, "config": config}
    return render(request, "chat/room.html", context)


def try_seed(request: HttpRequest) -> HttpResponse:
    """Open a socket to one of the seed endpoints and send it text."""
    path = request.GET.get("path", SEEDS[0][0])
    example = next((frame for seed, frame, _ in SEEDS if seed == path), "")
    return render(request, "chat/try.html", {"path": path, "example": example, "seeds": SEEDS})


class RoomEvents(RoomEventsView):
    """The room over Server-Sent Events for networks that break WebSockets (rooms.js falls back to it)."""

    presence = True

    async def payload(self, request: HttpRequest, user: typing.Any, data: typing.Any) -> typing.Any:
        """The same chat message the socket would broadcast."""
        authenticated = user is not None and user.is_authenticated
        name = user.get_username() if authenticated else (request.GET.get("username") or "anonymous")[:50]
        return chat_message(name, data)
