"""The engine's view of the channel layer: how often subscriptions must be re-added."""

from __future__ import annotations

from channels.layers import InMemoryChannelLayer
from channels_redis.core import RedisChannelLayer
from channels_redis.pubsub import RedisPubSubChannelLayer

from nexios_compat.engine.layer import refresh_interval


def test_refresh_stays_at_its_longest_under_the_default_day_of_group_expiry() -> None:
    assert refresh_interval(InMemoryChannelLayer(), 3600.0) == 3600.0
    assert refresh_interval(RedisChannelLayer(), 3600.0) == 3600.0


def test_refresh_runs_twice_per_a_shorter_group_expiry() -> None:
    """Sites that lowered ``group_expiry`` would otherwise lose every room's subscription."""
    assert refresh_interval(InMemoryChannelLayer(group_expiry=60), 3600.0) == 30.0
    assert refresh_interval(RedisChannelLayer(group_expiry=600), 3600.0) == 300.0


async def test_the_pub_sub_layer_expires_nothing() -> None:
    # Its attributes live on a per-loop layer, hence the running loop.
    assert refresh_interval(RedisPubSubChannelLayer(), 3600.0) == 3600.0
