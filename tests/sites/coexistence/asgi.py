"""``tests.sites.multiprocess.asgi`` plus a site's own plain Channels consumers under ``/plain``.

- ``/plain/room/{name}``: an ``AsyncJsonWebsocketConsumer`` in the layer group
  ``name``; ``{"say": x}`` is sent to the group, which every member receives
  as ``{"heard": x}``.
- ``/plain/direct``: first sends ``{"channel": <its channel name>}``;
  ``{"to": <channel>, "say": x}`` is ``channel_layer.send`` to that one
  channel, which receives it as ``{"direct": x}``.
"""

# ruff: noqa: I001  (tests.sites.multiprocess.asgi sets Django up: it must be imported first)
from tests.sites.multiprocess.asgi import application as rooms_application

import typing

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.routing import ProtocolTypeRouter, URLRouter
from django.urls import path, re_path


class PlainRoomConsumer(AsyncJsonWebsocketConsumer):
    """A chat room the way the Channels tutorial writes one."""

    async def connect(self) -> None:
        """Join the group named in the URL."""
        self.group = self.scope["url_route"]["kwargs"]["name"]
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        """Leave the group."""
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: typing.Any, **kwargs: typing.Any) -> None:
        """Send what the client says to the whole group."""
        await self.channel_layer.group_send(self.group, {"type": "room.message", "text": content["say"]})

    async def room_message(self, event: dict[str, typing.Any]) -> None:
        """Pass a group message on to the client."""
        await self.send_json({"heard": event["text"]})


class PlainDirectConsumer(AsyncJsonWebsocketConsumer):
    """A consumer that other consumers reach by its channel name alone."""

    async def connect(self) -> None:
        """Accept and tell the client our channel name."""
        await self.accept()
        await self.send_json({"channel": self.channel_name})

    async def receive_json(self, content: typing.Any, **kwargs: typing.Any) -> None:
        """Send what the client says to one channel."""
        await self.channel_layer.send(content["to"], {"type": "direct.message", "text": content["say"]})

    async def direct_message(self, event: dict[str, typing.Any]) -> None:
        """Pass a direct message on to the client."""
        await self.send_json({"direct": event["text"]})


application = ProtocolTypeRouter(
    {
        "http": rooms_application.application_mapping["http"],
        "websocket": URLRouter(
            [
                path("plain/room/<str:name>", PlainRoomConsumer.as_asgi()),
                path("plain/direct", PlainDirectConsumer.as_asgi()),
                re_path(r"", rooms_application.application_mapping["websocket"]),
            ]
        ),
    }
)
