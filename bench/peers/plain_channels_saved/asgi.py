"""ASGI entry point: ``daphne ... bench.peers.plain_channels_saved.asgi:application``.

Rooms at ``/ws/bench-saved/<room>/`` (the path of the other saved systems).
"""

from __future__ import annotations

import os

# Forced, not setdefault: the peer must never pick up the project's settings module.
os.environ["DJANGO_SETTINGS_MODULE"] = "bench.peers.plain_channels_saved.settings"

from django.core.asgi import get_asgi_application

django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from bench.peers.plain_channels_saved.consumers import SavedRoomConsumer  # noqa: E402
from devservers import raise_nofile_limit  # noqa: E402

raise_nofile_limit()

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": URLRouter([path("ws/bench-saved/<str:room>/", SavedRoomConsumer.as_asgi())]),
    }
)
