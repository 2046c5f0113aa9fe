"""ASGI entry point: HTTP to Django, WebSockets through origin check, auth and routes."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
# Django must be set up before anything imports models.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from chat.sockets import app as chat_app  # noqa: E402
from nexios_compat.security import SecureWebSocketStack  # noqa: E402

# daphne serves no static files; in development serve them as runserver does.
http_app = ASGIStaticFilesHandler(django_asgi_app) if settings.DEBUG else django_asgi_app

application = ProtocolTypeRouter(
    {
        "http": http_app,
        # Same-origin check (Origin must be this site's or in CSRF_TRUSTED_ORIGINS),
        # then Django session auth, then the rooms.
        "websocket": SecureWebSocketStack(chat_app),
    }
)
