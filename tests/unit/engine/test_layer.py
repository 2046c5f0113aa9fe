"""The engine's view of the channel layer: how often subscriptions must be re-added, over which servers."""

from __future__ import annotations

from channels.layers import InMemoryChannelLayer
from channels_redis.core import RedisChannelLayer
from channels_redis.pubsub import RedisPubSubChannelLayer

from nexios_compat.engine.layer import group_shards, new_channel, probe_groups, refresh_interval


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


# Sharded layers: one probe group per Redis server ------------------------------------

THREE_HOSTS = ["redis://127.0.0.1:1/0", "redis://127.0.0.1:2/0", "redis://127.0.0.1:3/0"]


async def test_probe_groups_cover_every_server_of_a_sharded_core_layer() -> None:
    layer = RedisChannelLayer(hosts=THREE_HOSTS)
    groups = probe_groups(layer, "nexios.probe.x")
    assert [layer.consistent_hash(group) for group in groups] == [0, 1, 2]
    assert all(group.startswith("nexios.probe.x.") for group in groups)


async def test_probe_groups_cover_every_shard_of_a_sharded_pubsub_layer() -> None:
    layer = RedisPubSubChannelLayer(hosts=THREE_HOSTS)
    count, shard_of = group_shards(layer)
    groups = probe_groups(layer, "nexios.probe.x")
    assert count == 3
    assert [shard_of(group) for group in groups] == [0, 1, 2]
    loop_layer = layer._get_layer()
    assert {id(loop_layer._get_shard(f"asgi__group__{group}")) for group in groups} == {
        id(shard) for shard in loop_layer._shards
    }


async def test_one_server_layers_keep_one_probe_group() -> None:
    assert probe_groups(RedisChannelLayer(hosts=THREE_HOSTS[:1]), "p") == ["p"]
    assert probe_groups(InMemoryChannelLayer(), "p") == ["p"]


async def test_the_hub_channel_of_a_sharded_core_layer_is_one_send_and_receive_agree_on() -> None:
    """channels_redis hashes ``send``'s whole name but ``receive``'s part up to ``!``."""
    layer = RedisChannelLayer(hosts=THREE_HOSTS)
    drawn = [await layer.new_channel() for _ in range(30)]
    assert any(layer.consistent_hash(c) != layer.consistent_hash(layer.non_local_name(c)) for c in drawn)
    for _ in range(30):
        channel = await new_channel(layer)
        assert layer.consistent_hash(channel) == layer.consistent_hash(layer.non_local_name(channel))
