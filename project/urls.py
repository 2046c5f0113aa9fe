"""URL configuration: the admin, the chat example, and /metrics and /health for operations."""

from django.contrib import admin
from django.urls import include, path

from nexios_compat.views import TicketView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("chat.urls")),
    # Tickets for clients without the session cookie (apps, other origins): docs/tickets.md.
    path("rooms/ticket", TicketView.as_view(), name="rooms-ticket"),
    # Prometheus metrics and the load balancer's health check (restrict /metrics in nginx).
    path("", include("nexios_compat.urls")),
]
