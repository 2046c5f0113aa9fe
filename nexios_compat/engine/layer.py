"""The channel layer the engine runs on."""

from __future__ import annotations

import typing

from channels.layers import BaseChannelLayer, get_channel_layer
from django.core.exceptions import ImproperlyConfigured

from ..conf import get_config


def refresh_interval(layer: BaseChannelLayer, longest: float) -> float:
    """How often to re-add subscriptions: at most ``longest``, and twice per the layer's group expiry."""
    # RedisChannelLayer and InMemoryChannelLayer drop group members after
    # ``group_expiry`` (a day unless the site lowered it); the pub/sub layer has none.
    expiry = getattr(layer, "group_expiry", None)
    if isinstance(expiry, int | float) and expiry > 0:
        return min(longest, expiry / 2)
    return longest


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
