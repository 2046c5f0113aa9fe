"""Checks of the channel layer and the cluster's timing: what the rooms need of it."""

from __future__ import annotations

import typing
from urllib.parse import parse_qs, urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.utils.module_loading import import_string

from ..conf import get_config

INMEMORY = "channels.layers.InMemoryChannelLayer"
REDIS = "channels_redis.core.RedisChannelLayer"
PUBSUB = "channels_redis.pubsub.RedisPubSubChannelLayer"
# Layers the cluster tests run on; any other is checked for what rooms need.
KNOWN_LAYERS = {INMEMORY, REDIS, PUBSUB}
# channels_redis blocks on BZPOPMIN for this long; redis-py 8 times sockets out after 5 s by default.
REDIS_POP_TIMEOUT = 5.0
REDIS_DEFAULT_SOCKET_TIMEOUT = 5.0


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
    backend = layers[alias].get("BACKEND", "")
    config = layers[alias].get("CONFIG", {}) or {}
    if backend not in KNOWN_LAYERS:
        unusable = _check_other_backend(alias, backend)
        if unusable:
            return unusable
    messages: list[CheckMessage] = []
    if backend == INMEMORY and not settings.DEBUG:
        messages.append(
            Warning(
                "The in-memory channel layer cannot span processes.",
                hint="With DEBUG off you are likely running several daphne processes: "
                "set REDIS_URL / use channels_redis.core.RedisChannelLayer.",
                id="nexios_compat.W001",
            )
        )
    # The pub/sub layer keeps no capacity: it queues in the process without a bound.
    capacity = config.get("capacity", 100)
    if backend != PUBSUB and capacity < 1000:
        messages.append(
            Warning(
                f"The channel layer's capacity is {capacity}; busy rooms lose broadcasts beyond it.",
                hint="Set CHANNEL_LAYERS[alias]['CONFIG']['capacity'] to 10000 or more.",
                id="nexios_compat.W002",
            )
        )
    if backend in (REDIS, PUBSUB):
        for host in config.get("hosts") or [{}]:
            messages += _check_sentinel_host(host)
            # The pub/sub layer reads with 0.1 s polls and publishes on one connection
            # at a time: the pop timeout and pool size traps are RedisChannelLayer's.
            if backend == REDIS:
                messages += _check_redis_host(host)
    return messages


def _check_other_backend(alias: str, backend: str) -> list[CheckMessage]:
    """Explain why a layer we have not tested cannot serve rooms, if it cannot."""
    try:
        layer_class = import_string(backend)
    except ImportError as error:
        return [
            Error(
                f"CHANNEL_LAYERS[{alias!r}]['BACKEND'] is {backend!r}, which cannot be imported ({error}).",
                hint=f"Install the package that provides it, or use {REDIS} or {PUBSUB}.",
                id="nexios_compat.E002",
            )
        ]
    if "groups" not in getattr(layer_class, "extensions", ()) or not hasattr(layer_class, "group_send"):
        return [
            Error(
                f"The channel layer {backend!r} has no groups: nexios_compat cannot serve rooms on it.",
                hint="Every room is a layer group its processes subscribe to; use a layer with the "
                f"'groups' extension: {INMEMORY} (one process), {REDIS} or {PUBSUB} (several).",
                id="nexios_compat.E003",
            )
        ]
    return []


def _check_sentinel_host(host: typing.Any) -> list[CheckMessage]:
    """Check that a Sentinel host entry has both halves channels_redis needs."""
    if not isinstance(host, dict) or ("master_name" in host) == ("sentinels" in host):
        return []
    missing = "sentinels" if "master_name" in host else "master_name"
    return [
        Error(
            f"A channel layer host reaches Redis through Sentinel but has no {missing!r}: {_shown(host)}.",
            hint="A Sentinel host needs both, e.g. {'sentinels': [('sentinel-1', 26379)], "
            "'master_name': 'mymaster', ...}; without them channels_redis fails on the first message.",
            id="nexios_compat.E004",
        )
    ]


def _shown(host: dict[str, typing.Any]) -> str:
    """A host entry without its passwords."""
    secret = {"password", "sentinel_kwargs"}
    return repr({key: "***" if key in secret else value for key, value in host.items()})


def _check_redis_host(host: typing.Any) -> list[CheckMessage]:
    """Check one channels_redis host entry against redis-py 8's defaults."""
    options: dict[str, typing.Any] = dict(host) if isinstance(host, dict) else {}
    address = options.get("address", host if isinstance(host, str) else "")
    if isinstance(address, str) and address:
        # Query parameters of the URL win over keyword arguments in redis-py.
        options.update({key: values[-1] for key, values in parse_qs(urlsplit(address).query).items()})
    if isinstance(address, str) and address:
        shown = _without_password(address)
    else:
        shown = _shown(host) if isinstance(host, dict) else repr(host)
    messages: list[CheckMessage] = []
    timeout = options.get("socket_timeout", REDIS_DEFAULT_SOCKET_TIMEOUT)
    if timeout is not None and float(timeout) <= REDIS_POP_TIMEOUT:
        messages.append(
            Warning(
                f"The Redis host {shown} has a socket timeout of {timeout} s, not above the "
                f"{REDIS_POP_TIMEOUT:g} s that channels_redis blocks waiting for messages.",
                hint="Idle readers then fail with TimeoutError and reconnect over and over: "
                "set 'socket_timeout': 15 in the host dict.",
                id="nexios_compat.W003",
            )
        )
    if "max_connections" not in options:
        messages.append(
            Warning(
                f"The Redis host {shown} has no max_connections: redis-py caps its pool at 100.",
                hint="Layer calls running at once beyond it fail with MaxConnectionsError: set "
                "'max_connections' to about the sockets one process serves (see docs/deployment.md).",
                id="nexios_compat.W004",
            )
        )
    return messages


def _without_password(address: str) -> str:
    parts = urlsplit(address)
    if parts.password is None:
        return address
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()


@register(Tags.compatibility)
def check_presence_timing(app_configs: typing.Any = None, **kwargs: typing.Any) -> list[CheckMessage]:
    """Check that a live process always heartbeats well within PROCESS_TIMEOUT."""
    config = get_config()
    interval, timeout = float(config["HEARTBEAT_INTERVAL"]), float(config["PROCESS_TIMEOUT"])
    if timeout < 2 * interval:
        return [
            Warning(
                f"PROCESS_TIMEOUT ({timeout:g} s) is less than twice HEARTBEAT_INTERVAL ({interval:g} s).",
                hint="One late heartbeat would get a live process's members removed by its peers "
                "(it rejoins at its next heartbeat). Keep PROCESS_TIMEOUT at 3 or more intervals.",
                id="nexios_compat.W005",
            )
        ]
    return []


# Sharded layers (W160-W169, E160-E169) ----------------------------------------------------

# The schemes redis-py (and so channels_redis) opens; Valkey answers on redis:// too.
REDIS_SCHEMES = {"redis", "rediss", "unix"}


@register(Tags.compatibility)
def check_sharded_layer(app_configs: typing.Any = None, **kwargs: typing.Any) -> list[CheckMessage]:
    """E160: a host address redis-py cannot open; W160: a RedisChannelLayer sharded over several hosts."""
    layer = (getattr(settings, "CHANNEL_LAYERS", {}) or {}).get(get_config()["LAYER_ALIAS"], {})
    backend = layer.get("BACKEND", "")
    if backend not in (REDIS, PUBSUB):
        return []
    hosts = list((layer.get("CONFIG", {}) or {}).get("hosts") or [])
    messages: list[CheckMessage] = []
    for host in hosts:
        address = host.get("address") if isinstance(host, dict) else host
        scheme = urlsplit(address).scheme if isinstance(address, str) else "redis"
        if scheme not in REDIS_SCHEMES:
            messages.append(
                Error(
                    f"A channel layer host address is {_without_password(str(address))!r}: "
                    f"redis-py opens only {', '.join(sorted(REDIS_SCHEMES))} URLs.",
                    hint="Valkey answers redis:// URLs: write redis://host:6379/0. channels_redis cannot "
                    "talk to a Redis Cluster (its nodes answer MOVED for keys they do not own): list "
                    "standalone servers as separate 'hosts' and channels_redis shards over them itself.",
                    id="nexios_compat.E160",
                )
            )
    if backend == REDIS and len(hosts) > 1:
        messages.append(
            Warning(
                f"The RedisChannelLayer is sharded over {len(hosts)} hosts: channels_redis queues a "
                "send() to a process-local channel (a consumer's channel_name) on the server its whole "
                "name hashes to, but receives it from the one its part up to '!' hashes to, so most such "
                "sends are never read (django/channels#1492).",
                hint="Rooms are not affected: nexios_compat picks a channel both hashes agree on and "
                "sends through groups. Your own consumers' channel_layer.send(channel_name) are: use "
                f"{PUBSUB} on the same hosts (it hashes one name both ways), or a single host.",
                id="nexios_compat.W160",
            )
        )
    return messages
