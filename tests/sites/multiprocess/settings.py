"""Settings for the multi-process tests: the project's, with NEXIOS_COMPAT from ``$MP_NEXIOS_COMPAT``.

Tests that need the defaults (the 15 s SIGKILL bound) leave the variable unset.
``$MP_LAYER`` picks the channel layer: ``redis`` (the project's
``RedisChannelLayer``, the default), ``pubsub`` (``RedisPubSubChannelLayer``
on the same hosts) or ``memory`` (one process). ``$MP_SENTINEL``
(``"host:port,..."``) reaches Redis through those Sentinels, master ``mymaster``.
``$MP_REDIS_URLS`` (``"redis://...,redis://..."``) shards the layer over those
servers (``hosts``: one entry each, with the project's options), either layer.
``$MP_LAYER_LAG`` (seconds) makes this process publish its broadcasts that late.
"""

import json
import os
import typing

from project.settings import *  # noqa: F403

NEXIOS_COMPAT = json.loads(os.environ.get("MP_NEXIOS_COMPAT") or "{}")

_layer: dict[str, typing.Any] = CHANNEL_LAYERS["default"]  # noqa: F405
if os.environ.get("MP_SENTINEL"):
    (_host,) = _layer["CONFIG"]["hosts"]
    del _host["address"]
    _host["master_name"] = "mymaster"
    _host["sentinels"] = [
        (name, int(port)) for name, port in (item.split(":") for item in os.environ["MP_SENTINEL"].split(","))
    ]
    _host["sentinel_kwargs"] = {"socket_timeout": 5}

if os.environ.get("MP_REDIS_URLS"):
    (_host,) = _layer["CONFIG"]["hosts"]
    _layer["CONFIG"]["hosts"] = [{**_host, "address": url} for url in os.environ["MP_REDIS_URLS"].split(",")]

if os.environ.get("MP_LAYER") == "pubsub":
    _layer["BACKEND"] = "channels_redis.pubsub.RedisPubSubChannelLayer"
    del _layer["CONFIG"]["capacity"]  # it keeps no queues in Redis
elif os.environ.get("MP_LAYER") == "memory":
    _layer.clear()
    _layer.update({"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 10000}})

if os.environ.get("MP_LAYER_LAG"):
    _layer["BACKEND"] = "tests.support.layers.LaggingRedisChannelLayer"
    _layer["CONFIG"]["lag"] = float(os.environ["MP_LAYER_LAG"])
