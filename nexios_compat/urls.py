"""URLs of the operations views: ``path("", include("nexios_compat.urls"))`` mounts them."""

from django.urls import path

from .monitoring import health_view, live_view, metrics_view, ready_view

app_name = "nexios_compat"
urlpatterns = [
    path("metrics", metrics_view, name="metrics"),
    path("health", health_view, name="health"),
    path("health/live", live_view, name="health-live"),
    path("health/ready", ready_view, name="health-ready"),
]
