from django.apps import AppConfig


class ChatConfig(AppConfig):
    """The example chat site."""

    name = "chat"
    default_auto_field = "django.db.models.BigAutoField"
