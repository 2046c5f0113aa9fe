"""App configuration."""

from django.apps import AppConfig


class NexiosCompatConfig(AppConfig):
    """Registers nexios_compat's models, admin and system checks."""

    name = "nexios_compat"
    verbose_name = "Rooms"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Register the system checks."""
        from . import checks  # noqa: F401
