"""Checks of sharded and Valkey layer configurations: W160, E160."""

from __future__ import annotations

import typing

from tests.unit.test_checks import REDIS_OK, ours

HOST = {"max_connections": 1000, "socket_timeout": 15}
PUBSUB = "channels_redis.pubsub.RedisPubSubChannelLayer"


def layer(addresses: list[str], backend: str = REDIS_OK["BACKEND"]) -> dict[str, typing.Any]:
    hosts = [{"address": address, **HOST} for address in addresses]
    return {"default": {"BACKEND": backend, "CONFIG": {**REDIS_OK["CONFIG"], "hosts": hosts}}}


THREE = ["redis://r1:6379/0", "redis://r2:6379/0", "redis://r3:6379/0"]


def test_w160_a_core_layer_sharded_over_several_hosts() -> None:
    messages = ours(CHANNEL_LAYERS=layer(THREE))
    assert list(messages) == ["nexios_compat.W160"]
    assert "3 hosts" in messages["nexios_compat.W160"].msg
    assert PUBSUB in (messages["nexios_compat.W160"].hint or "")


def test_a_pubsub_layer_on_several_hosts_and_one_host_core_layer_pass() -> None:
    assert ours(CHANNEL_LAYERS=layer(THREE, PUBSUB)) == {}
    assert ours(CHANNEL_LAYERS=layer(THREE[:1])) == {}


def test_e160_an_address_redis_py_cannot_open() -> None:
    for address in ("valkey://v1:6379/0", "redis+cluster://node:7000"):
        messages = ours(CHANNEL_LAYERS=layer([address], PUBSUB))
        assert list(messages) == ["nexios_compat.E160"], address
        assert address in messages["nexios_compat.E160"].msg
    hidden = ours(CHANNEL_LAYERS=layer(["valkey://:secret@v1:6379/0"], PUBSUB))["nexios_compat.E160"]
    assert "secret" not in hidden.msg
    assert ours(CHANNEL_LAYERS=layer(["rediss://r1:6380/0", "unix:///run/redis.sock"], PUBSUB)) == {}
