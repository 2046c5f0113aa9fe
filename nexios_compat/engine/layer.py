"""The channel layer the engine runs on."""

from __future__ import annotations

import typing

from channels.layers import BaseChannelLayer, get_channel_layer
from django.core.exceptions import ImproperlyConfigured

from ..conf import get_config


def get_layer() -> BaseChannelLayer:
    """Return the configured channel layer or explain how to configure one."""
    alias = get_config()["LAYER_ALIAS"]
    layer = get_channel_layer(alias)
    if layer is None:
        raise ImproperlyConfigured(
            f"nexios_compat needs a channel layer: add {alias!r} to CHANNEL_LAYERS "
            "(channels.layers.InMemoryChannelLayer for one process, channels_redis for several)."
        )
    return typing.cast(BaseChannelLayer, layer)
