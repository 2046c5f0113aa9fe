"""A sync view that saves its own rows and publishes in one transaction, and a room to watch.

Served by daphne in ``tests/server/test_transactions.py`` (settings ``tests.sites.transactions.settings``).
"""

from __future__ import annotations

from asgiref.sync import async_to_sync
from django.contrib.auth.models import Group
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path

from chat.sockets import app
from nexios_compat import WebSocket
from nexios_compat.websockets.base import WebSocketDisconnect
from nexios_compat.websockets.channels import Channel, ChannelBox


class Rollback(Exception):
    """Raised to roll the view's transaction back."""


def publish(room: str, label: str) -> None:
    """Save a message and send an unsaved one, as sync Django code does."""
    async_to_sync(ChannelBox.group_send)(room, {"saved": label}, save_history=True)
    async_to_sync(ChannelBox.group_send)(room, {"unsaved": label})


def tx_view(request: HttpRequest, mode: str, room: str) -> HttpResponse:
    """``commit``, ``rollback``, ``savepoint`` (an inner block rolled back) or ``error`` (a 500)."""
    try:
        with transaction.atomic():
            Group.objects.create(name=f"{room}-{mode}")
            publish(room, mode)
            if mode == "savepoint":
                try:
                    with transaction.atomic():
                        Group.objects.create(name=f"{room}-inner")
                        publish(room, "inner")
                        raise Rollback
                except Rollback:
                    pass
            if mode == "rollback":
                raise Rollback
            if mode == "error":
                raise RuntimeError("the view failed")
    except Rollback:
        pass
    return HttpResponse(mode)


def history_view(request: HttpRequest, room: str) -> JsonResponse:
    """What history and the view's own table hold."""
    messages = async_to_sync(ChannelBox.show_history)(room)
    groups = sorted(Group.objects.filter(name__startswith=f"{room}-").values_list("name", flat=True))
    return JsonResponse(
        {"history": [m.payload for m in messages], "seqs": [m.seq for m in messages], "groups": groups}
    )


urlpatterns = [
    path("tx/<str:mode>/<str:room>", tx_view),
    path("tx-history/<str:room>", history_view),
    path("", include("project.urls")),
]


@app.websocket("/tx-room/{room}")
async def tx_room(ws: WebSocket, room: str) -> None:
    """Join ``room`` and hold the socket open."""
    await ws.accept()
    channel = Channel(ws)
    await ChannelBox.add_channel_to_group(channel, room)
    await channel.send({"joined": room})
    try:
        while True:
            await ws.receive_text()
    except WebSocketDisconnect:
        pass
