"""The channel layer the engine runs on."""

from __future__ import annotations

import typing
from collections.abc import Callable

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


# Names tried per server when spreading probe groups over a sharded layer; with crc32 over
# a 4096-slot ring the first few names already cover every server.
PROBE_NAMES_PER_SHARD = 64


def group_shards(layer: BaseChannelLayer) -> tuple[int, Callable[[str], int]]:
    """How many Redis servers the layer spreads groups over, and which one holds a group.

    Call from the event loop the layer serves (the pub/sub layer keeps its shards per loop).
    """
    # RedisChannelLayer keeps each group's members on the server its name hashes to.
    redis: typing.Any = layer  # channels_redis's layers are untyped
    ring = vars(layer).get("ring_size")
    if isinstance(ring, int) and ring > 1:
        return ring, typing.cast(Callable[[str], int], redis.consistent_hash)
    # RedisPubSubChannelLayer subscribes each group on the shard its channel name hashes to.
    if callable(getattr(type(layer), "_get_layer", None)):
        loop_layer = redis._get_layer()
        shards = list(getattr(loop_layer, "_shards", ()))
        if len(shards) > 1:

            def shard_of(group: str) -> int:
                shard = loop_layer._get_shard(loop_layer._get_group_channel_name(group))
                return next(index for index, each in enumerate(shards) if each is shard)

            return len(shards), shard_of
    return 1, lambda group: 0


# Channel names drawn before giving up on one that both halves of a sharded layer agree on
# (each draw agrees with probability 1/servers: 100 draws fail about never).
CHANNEL_DRAWS = 100


async def new_channel(layer: BaseChannelLayer) -> str:
    """A process-local channel that ``layer.send`` reaches on a sharded RedisChannelLayer too.

    channels_redis 4.3.0 queues ``send``'s message on the server the *whole* name hashes
    to, but ``receive`` pops from the one the part up to ``!`` hashes to
    (django/channels#1492): with three servers two sends in three are never read. A name
    whose two hashes agree is drawn instead (``new_channel`` does no I/O on that layer).
    """
    channel = await layer.new_channel()
    redis: typing.Any = layer
    ring = vars(layer).get("ring_size")
    if not (isinstance(ring, int) and ring > 1 and callable(getattr(redis, "non_local_name", None))):
        return channel
    for _ in range(CHANNEL_DRAWS):
        if redis.consistent_hash(channel) == redis.consistent_hash(redis.non_local_name(channel)):
            return channel
        channel = await layer.new_channel()
    return channel


def probe_groups(layer: BaseChannelLayer, base: str) -> list[str]:
    """One probe group per Redis server of the layer, named after ``base``.

    A restarted server loses only the groups it held: a probe through a group on
    another server would still come back and hide the loss.
    """
    count, shard_of = group_shards(layer)
    if count == 1:
        return [base]
    found: dict[int, str] = {}
    for index in range(PROBE_NAMES_PER_SHARD * count):
        name = f"{base}.{index}"
        found.setdefault(shard_of(name), name)
        if len(found) == count:
            break
    return [found[shard] for shard in sorted(found)]


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
