"""System checks (``nexios_compat/checks/``), run the way ``manage.py check`` runs them."""

from __future__ import annotations

import typing

import pytest
from django.core.checks import run_checks
from django.test import override_settings

INMEMORY = {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 10000}}
REDIS_OK: dict[str, typing.Any] = {
    "BACKEND": "channels_redis.core.RedisChannelLayer",
    "CONFIG": {
        "hosts": [
            {"address": "redis://:secret@localhost:6379/0", "max_connections": 1000, "socket_timeout": 15}
        ],
        "capacity": 10000,
    },
}


def ours(**settings: typing.Any) -> dict[str, typing.Any]:
    """Our check messages under ``settings`` (DEBUG on unless given; pytest-django turns it off), by id."""
    settings.setdefault("DEBUG", True)
    with override_settings(**settings):
        return {m.id: m for m in run_checks() if m.id and m.id.startswith("nexios_compat.")}


def redis_layer(host: typing.Any) -> dict[str, typing.Any]:
    return {"default": {**REDIS_OK, "CONFIG": {**REDIS_OK["CONFIG"], "hosts": [host]}}}


def test_the_project_settings_pass() -> None:
    assert ours() == {}
    assert ours(CHANNEL_LAYERS={"default": REDIS_OK}, DEBUG=False) == {}


def test_e001_layer_alias_missing_from_channel_layers() -> None:
    messages = ours(NEXIOS_COMPAT={"LAYER_ALIAS": "rooms"}, CHANNEL_LAYERS={"default": INMEMORY})
    assert list(messages) == ["nexios_compat.E001"]
    assert "'rooms'" in messages["nexios_compat.E001"].msg


def test_w001_in_memory_layer_only_warns_with_debug_off() -> None:
    assert "nexios_compat.W001" not in ours(CHANNEL_LAYERS={"default": INMEMORY}, DEBUG=True)
    messages = ours(CHANNEL_LAYERS={"default": INMEMORY}, DEBUG=False)
    assert list(messages) == ["nexios_compat.W001"]
    assert "REDIS_URL" in (messages["nexios_compat.W001"].hint or "")
    assert "nexios_compat.W001" not in ours(CHANNEL_LAYERS={"default": REDIS_OK}, DEBUG=False)


def test_w002_small_capacity() -> None:
    layer = {"BACKEND": "channels.layers.InMemoryChannelLayer"}  # the default capacity is 100
    assert list(ours(CHANNEL_LAYERS={"default": layer})) == ["nexios_compat.W002"]
    small = {**layer, "CONFIG": {"capacity": 999}}
    assert "999" in ours(CHANNEL_LAYERS={"default": small})["nexios_compat.W002"].msg


@pytest.mark.parametrize(
    "host",
    [
        pytest.param({"address": "redis://localhost:6379", "max_connections": 1000}, id="redis-py-default"),
        pytest.param(
            {"address": "redis://localhost:6379", "max_connections": 1000, "socket_timeout": 5}, id="5s"
        ),
        pytest.param(
            {"address": "redis://localhost:6379?socket_timeout=3", "max_connections": 1000}, id="in-url"
        ),
    ],
)
def test_w003_redis_socket_timeout_not_above_the_pop_timeout(host: dict[str, typing.Any]) -> None:
    assert list(ours(CHANNEL_LAYERS=redis_layer(host))) == ["nexios_compat.W003"]


def test_w003_accepts_a_longer_or_no_timeout() -> None:
    for timeout in (15, None):
        host = {"address": "redis://localhost:6379", "max_connections": 1000, "socket_timeout": timeout}
        assert ours(CHANNEL_LAYERS=redis_layer(host)) == {}


def test_w004_redis_pool_left_at_redis_py_s_cap() -> None:
    host = {"address": "redis://:secret@localhost:6379/0", "socket_timeout": 15}
    messages = ours(CHANNEL_LAYERS=redis_layer(host))
    assert list(messages) == ["nexios_compat.W004"]
    assert "secret" not in messages["nexios_compat.W004"].msg
    # A bare URL or (host, port) gets every redis-py default.
    assert set(ours(CHANNEL_LAYERS=redis_layer("redis://localhost:6379"))) == {
        "nexios_compat.W003",
        "nexios_compat.W004",
    }
    assert set(ours(CHANNEL_LAYERS=redis_layer(("localhost", 6379)))) == {
        "nexios_compat.W003",
        "nexios_compat.W004",
    }


def test_w005_process_timeout_too_close_to_the_heartbeat() -> None:
    messages = ours(NEXIOS_COMPAT={"HEARTBEAT_INTERVAL": 3, "PROCESS_TIMEOUT": 5})
    assert list(messages) == ["nexios_compat.W005"]
    assert ours(NEXIOS_COMPAT={"HEARTBEAT_INTERVAL": 3, "PROCESS_TIMEOUT": 10}) == {}


def deploy_ids(**settings: typing.Any) -> set[str]:
    """Ids of our messages from ``manage.py check --deploy`` under ``settings``."""
    settings.setdefault("DEBUG", True)
    with override_settings(**settings):
        return {
            m.id for m in run_checks(include_deployment_checks=True) if m.id and m.id.startswith("nexios_")
        }


def test_w006_deploy_check_warns_without_a_rate_limit_only() -> None:
    assert "nexios_compat.W006" not in ours(NEXIOS_COMPAT={})  # not a plain ``check``
    assert "nexios_compat.W006" in deploy_ids(NEXIOS_COMPAT={})
    assert "nexios_compat.W006" in deploy_ids(NEXIOS_COMPAT={"RATE_LIMIT_MESSAGES": None})
    assert "nexios_compat.W006" not in deploy_ids(NEXIOS_COMPAT={"RATE_LIMIT_MESSAGES": 20})
    assert "nexios_compat.W006" not in deploy_ids()  # the example project opts into limits
    with override_settings(NEXIOS_COMPAT={}):
        [warning] = [m for m in run_checks(include_deployment_checks=True) if m.id == "nexios_compat.W006"]
    assert "RATE_LIMIT_MESSAGES" in (warning.hint or "")


PUBSUB = {
    "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
    "CONFIG": {"hosts": ["redis://localhost:6379"]},
}
SENTINEL_HOST = {
    "sentinels": [("localhost", 26379)],
    "master_name": "mymaster",
    "password": "secret",
    "max_connections": 1000,
    "socket_timeout": 15,
}


def test_the_pub_sub_layer_passes_without_capacity_pool_or_timeout() -> None:
    """It keeps no capacity, polls every 0.1 s and publishes on one connection at a time."""
    assert ours(CHANNEL_LAYERS={"default": PUBSUB}, DEBUG=False) == {}


@pytest.mark.parametrize("backend", [REDIS_OK["BACKEND"], PUBSUB["BACKEND"]])
def test_sentinel_hosts_pass_and_e004_explains_a_half_configured_one(backend: str) -> None:
    def layers(host: dict[str, typing.Any]) -> dict[str, typing.Any]:
        return {"default": {"BACKEND": backend, "CONFIG": {"hosts": [host], "capacity": 10000}}}

    assert ours(CHANNEL_LAYERS=layers(SENTINEL_HOST)) == {}
    for missing in ("sentinels", "master_name"):
        host = {key: value for key, value in SENTINEL_HOST.items() if key != missing}
        messages = ours(CHANNEL_LAYERS=layers(host))
        assert list(messages) == ["nexios_compat.E004"]
        assert repr(missing) in messages["nexios_compat.E004"].msg
        assert "secret" not in messages["nexios_compat.E004"].msg


def test_w003_names_a_sentinel_host_without_its_password() -> None:
    host = {**SENTINEL_HOST, "socket_timeout": 5}
    messages = ours(CHANNEL_LAYERS=redis_layer(host))
    assert list(messages) == ["nexios_compat.W003"]
    assert "mymaster" in messages["nexios_compat.W003"].msg
    assert "secret" not in messages["nexios_compat.W003"].msg


def test_e002_a_backend_that_cannot_be_imported() -> None:
    layer = {"BACKEND": "channels_nowhere.layers.Layer", "CONFIG": {"capacity": 10000}}
    messages = ours(CHANNEL_LAYERS={"default": layer})
    assert list(messages) == ["nexios_compat.E002"]
    assert "channels_nowhere" in messages["nexios_compat.E002"].msg


class LayerWithoutGroups:
    """A channel layer with point-to-point channels only."""

    extensions: typing.ClassVar[list[str]] = ["flush"]

    async def send(self, channel: str, message: dict[str, typing.Any]) -> None:
        """Send to one channel."""


def test_e003_a_layer_without_groups_cannot_serve_rooms() -> None:
    layer = {"BACKEND": f"{__name__}.LayerWithoutGroups", "CONFIG": {"capacity": 10000}}
    messages = ours(CHANNEL_LAYERS={"default": layer})
    assert list(messages) == ["nexios_compat.E003"]
    assert "groups" in messages["nexios_compat.E003"].msg
    # A layer we never tested, but with groups, is not refused.
    other = {"BACKEND": "tests.support.layers.CountingInMemoryLayer", "CONFIG": {"capacity": 10000}}
    assert ours(CHANNEL_LAYERS={"default": other}) == {}


@pytest.mark.parametrize("value", [-1, "5", None, True])
def test_w150_shutdown_retry_after_not_seconds(value: typing.Any) -> None:
    assert "nexios_compat.W150" in ours(NEXIOS_COMPAT={"SHUTDOWN_RETRY_AFTER": value})


@pytest.mark.parametrize("value", [0, 5, 2.5])
def test_w150_silent_for_seconds(value: float) -> None:
    assert "nexios_compat.W150" not in ours(NEXIOS_COMPAT={"SHUTDOWN_RETRY_AFTER": value})
