"""Index (rooms with live counts) and room pages."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from nexios_compat.models import Member, Room


def index(request: HttpRequest) -> HttpResponse:
    """List rooms with their live member counts and last activity; a form to enter one."""
    if request.GET.get("room"):
        return redirect("chat:room", room=request.GET["room"])
    rooms = Room.objects.order_by("-last_activity")[:50]
    counts: dict[int, int] = {}
    for room_id in Member.objects.values_list("room_id", flat=True):
        counts[room_id] = counts.get(room_id, 0) + 1
    rows = [{"room": room, "members": counts.get(room.pk, 0)} for room in rooms]
    return render(request, "chat/index.html", {"rows": rows})


def room(request: HttpRequest, room: str) -> HttpResponse:
    """The room page: history, live messages, member count."""
    return render(request, "chat/room.html", {"room": room})
