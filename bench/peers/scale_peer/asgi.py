"""The connection sweep's endpoint (``bench.scenarios.scale``), Centrifugo-shaped.

``/ws/scale/{group}/{user}/``: a presence member (key: ``user``) of its personal room
``u-{user}`` and of the group room ``g-{group}``; every JSON frame it sends goes to the
group room, saved in history unless ``$SCALE_SAVE_HISTORY`` is ``0``. Served by daphne with
the project's HTTP app, origin check and auth stack, like a real site.
"""

# project.asgi sets Django up, so it comes first.
from project.asgi import application as project_application  # noqa: I001

import os
import typing

from chat.sockets import app
from bench.peers.scale_peer import sampler
from devservers import raise_nofile_limit
from nexios_compat.websockets import ChannelBox, WebSocket, WebSocketEndpoint

raise_nofile_limit(1 << 18)
sampler.start()

SAVE_HISTORY = os.environ.get("SCALE_SAVE_HISTORY", "1") != "0"


class ScaleMember(WebSocketEndpoint):
    """A member of its personal room and of one group room, with presence on."""

    encoding = "json"
    presence = True

    async def on_connect(self, ws: WebSocket) -> None:
        """Accept, then join the personal room and the group room under the user's key."""
        await ws.accept()
        assert self.channel is not None
        user = ws.path_params["user"]
        self.channel.metadata["username"] = user
        await self.join_group(f"u-{user}")
        await self.join_group(f"g-{ws.path_params['group']}")

    async def on_receive(self, ws: WebSocket, data: typing.Any) -> None:
        """Broadcast the frame to the group room."""
        await ChannelBox.group_send(
            group_name=f"g-{ws.path_params['group']}", payload=data, save_history=SAVE_HISTORY
        )


app.add_ws_route(ScaleMember.as_route("/ws/scale/{group}/{user}/"))

application = project_application
