"""System checks: ``nexios_compat.E001`` ... and ``W001`` ..."""

from __future__ import annotations

import typing

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register

from .conf import get_config

INMEMORY = "channels.layers.InMemoryChannelLayer"


@register(Tags.compatibility)
def check_channel_layer(app_configs: typing.Any = None, **kwargs: typing.Any) -> list[CheckMessage]:
    """Check that the configured layer exists and can span the processes it must."""
    alias = get_config()["LAYER_ALIAS"]
    layers = getattr(settings, "CHANNEL_LAYERS", {}) or {}
    if alias not in layers:
        return [
            Error(
                f"NEXIOS_COMPAT['LAYER_ALIAS'] is {alias!r}, which is not in CHANNEL_LAYERS.",
                hint="Add it to CHANNEL_LAYERS (channels_redis for several processes).",
                id="nexios_compat.E001",
            )
        ]
    messages: list[CheckMessage] = []
    backend = layers[alias].get("BACKEND", "")
    if backend == INMEMORY and not settings.DEBUG:
        messages.append(
            Warning(
                "The in-memory channel layer cannot span processes.",
                hint="With DEBUG off you are likely running several daphne processes: "
                "set REDIS_URL / use channels_redis.core.RedisChannelLayer.",
                id="nexios_compat.W001",
            )
        )
    capacity = layers[alias].get("CONFIG", {}).get("capacity", 100)
    if capacity < 1000:
        messages.append(
            Warning(
                f"The channel layer's capacity is {capacity}; busy rooms lose broadcasts beyond it.",
                hint="Set CHANNEL_LAYERS[alias]['CONFIG']['capacity'] to 10000 or more.",
                id="nexios_compat.W002",
            )
        )
    return messages
