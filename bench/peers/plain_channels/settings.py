"""Minimal Django settings for the plain Channels peer: no database, no auth, no sessions.

The channel layer is chosen by the environment: ``REDIS_URL`` unset gives the in-memory
layer, set gives channels_redis. Both use capacity 10000 per channel so that a burst to a
1000-member room is not dropped by the default capacity of 100.
"""

from __future__ import annotations

import os

SECRET_KEY = "bench-only-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["channels"]
MIDDLEWARE: list[str] = []
DATABASES: dict[str, dict[str, str]] = {}
ROOT_URLCONF = "bench.peers.plain_channels.urls"
ASGI_APPLICATION = "bench.peers.plain_channels.asgi.application"
USE_TZ = True

CAPACITY = 10_000
REDIS_URL = os.environ.get("REDIS_URL", "").strip()

if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # redis-py 8 caps a pool at 100 connections and times sockets out after 5 s,
                # which collides with channels_redis' 5 s BZPOPMIN: raise both.
                "hosts": [{"address": REDIS_URL, "max_connections": 2000, "socket_timeout": 15}],
                "capacity": CAPACITY,
            },
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": CAPACITY},
        }
    }

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
