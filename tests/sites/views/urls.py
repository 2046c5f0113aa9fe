"""URLs for tests/unit/test_views.py: the history view behind endpoints with each kind of room rule."""

from django.urls import path

from nexios_compat.views import HistoryView
from nexios_compat.websockets import WebSocket, WebSocketEndpoint


class Open(WebSocketEndpoint):
    """No rules."""


class LoginOnly(WebSocketEndpoint):
    login_required = True


class Staffish(WebSocketEndpoint):
    permission_required = "nexios_compat.view_message"


class OnlyRoomA(WebSocketEndpoint):
    async def authorize(self, ws: WebSocket, group_name: str) -> bool:
        return group_name == "a" and ws.path_params["room"] == "a"


urlpatterns = [
    path("open/<str:room>/", HistoryView.as_view(endpoint=Open)),
    path("login/<str:room>/", HistoryView.as_view(endpoint=LoginOnly)),
    path("perm/<str:room>/", HistoryView.as_view(endpoint=Staffish)),
    path("custom/<str:room>/", HistoryView.as_view(endpoint=OnlyRoomA)),
    path("unset/<str:room>/", HistoryView.as_view()),
]
