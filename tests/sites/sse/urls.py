"""URLs for the SSE fallback tests: a room's event stream with presence, and the project's pages."""

from django.urls import include, path

from nexios_compat.sse import RoomEventsView


class Events(RoomEventsView):
    presence = True


urlpatterns = [
    path("events/<str:room>/", Events.as_view()),
    path("plain/<str:room>/", RoomEventsView.as_view()),
    path("", include("project.urls")),
]
