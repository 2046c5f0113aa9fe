"""ASGI entry for the Nexios 3.12 port: Django for HTTP, the ported app for WebSockets."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.sites.nexios312.settings")

from django.core.asgi import get_asgi_application

django_asgi_app = get_asgi_application()  # Django must be set up before the app imports models

from channels.routing import ProtocolTypeRouter  # noqa: E402

from tests.sites.nexios312.app import app  # noqa: E402

application = ProtocolTypeRouter({"http": django_asgi_app, "websocket": app})
