"""URL configuration: the admin, the chat example, and /metrics and /health for operations."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("chat.urls")),
    # Prometheus metrics and the load balancer's health check (restrict /metrics in nginx).
    path("", include("nexios_compat.urls")),
]
