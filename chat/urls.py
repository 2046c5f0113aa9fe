from django.urls import path

from nexios_compat.views import HistoryView

from . import views
from .sockets import RoomEndpoint

app_name = "chat"
urlpatterns = [
    path("", views.index, name="index"),
    path("room/<str:room>/", views.room, name="room"),
    # "Load older messages", under the same room rules as the socket.
    path("room/<str:room>/history/", HistoryView.as_view(endpoint=RoomEndpoint), name="history"),
    # The fallback for networks that break WebSockets: the same room as Server-Sent Events + POST.
    path("room/<str:room>/events/", views.RoomEvents.as_view(), name="events"),
    path("try/", views.try_seed, name="try"),
]
