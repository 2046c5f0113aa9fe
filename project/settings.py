"""Settings for the example project, read from the environment.

DATABASE_URL (default: SQLite file db.sqlite3 beside manage.py), REDIS_URL
(unset: in-memory channel layer; set: channels-redis), SECRET_KEY (required
unless DJANGO_DEVELOPMENT=1 or DEBUG=1), DEBUG (default: off, on with DJANGO_DEVELOPMENT=1),
ALLOWED_HOSTS, CSRF_TRUSTED_ORIGINS and TICKET_ALLOWED_ORIGINS (comma-separated), BEHIND_TLS_PROXY,
STATIC_ROOT.
"""

import os
import sys
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

TRUE = {"1", "true", "yes", "on"}

# Development (`make run` sets DJANGO_DEVELOPMENT=1): DEBUG on unless DEBUG says
# otherwise, and a known SECRET_KEY. Anywhere else DEBUG is off unless asked for,
# and a missing SECRET_KEY stops the process instead of signing sessions with a
# key everyone knows. A pytest run (PYTEST_VERSION, inherited by the servers the
# tests start) and mypy (django-stubs imports this module to read INSTALLED_APPS;
# it serves nothing) may use the development key too.
DEVELOPMENT = os.environ.get("DJANGO_DEVELOPMENT", "").lower() in TRUE
DEBUG = os.environ.get("DEBUG", "1" if DEVELOPMENT else "0").lower() in TRUE
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not (DEVELOPMENT or DEBUG or os.environ.get("PYTEST_VERSION") or "mypy" in sys.modules):
        raise ImproperlyConfigured(
            "Set SECRET_KEY in the environment (or DJANGO_DEVELOPMENT=1 on a development machine)."
        )
    SECRET_KEY = "insecure-local-development-key-change-me"
ALLOWED_HOSTS = [
    h.strip() for h in os.environ.get("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",") if h.strip()
]
# Behind a proxy that terminates TLS and sets X-Forwarded-Proto (deploy/nginx.conf):
# without it a browser's https:// Origin never matches the http:// request and
# both CSRF and the WebSocket origin check refuse. Only set it behind such a proxy.
if os.environ.get("BEHIND_TLS_PROXY", "").lower() in {"1", "true", "yes", "on"}:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
CSRF_TRUSTED_ORIGINS = [o.strip() for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()]

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "nexios_compat",
    "chat",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "project.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = None
ASGI_APPLICATION = "project.asgi.application"

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        conn_max_age=0,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE takes the write lock at BEGIN, so two writers queue on the
    # busy timeout instead of failing with "database is locked" on upgrade.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"transaction_mode": "IMMEDIATE", "timeout": 20, "init_command": "PRAGMA journal_mode=WAL;"}
    )
    # Tests use a file, not shared-cache memory, so that the ORM thread and the
    # test thread lock the way a real deployment does.
    DATABASES["default"]["TEST"] = {
        "NAME": os.environ.get("SQLITE_TEST_NAME", f"/tmp/nexios_compat_test_{os.getpid()}.sqlite3")
    }

REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [
                    {
                        "address": REDIS_URL,
                        # redis-py 8 caps a pool at 100 connections and times
                        # sockets out after 5 s, the same as channels_redis's
                        # 5 s BZPOPMIN: size the pool, outlast the pop.
                        "max_connections": int(os.environ.get("REDIS_MAX_CONNECTIONS", "1000")),
                        "socket_timeout": 15,
                        "socket_connect_timeout": 5,
                        "retry_on_timeout": True,
                    }
                ],
                "capacity": 10000,
            },
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": 10000},
        }
    }

# Tickets (/rooms/ticket) are remembered in the cache until used: with Redis, in Redis, so
# that a ticket issued by one daphne opens a socket on any other (one process: in memory).
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Where `manage.py collectstatic` puts files for the proxy to serve (deploy/nginx.conf).
STATIC_ROOT = os.environ.get("STATIC_ROOT") or None
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "nexios_compat": {
            "handlers": ["console"],
            "level": os.environ.get("NEXIOS_COMPAT_LOG_LEVEL", "WARNING"),
            "propagate": False,
        },
    },
}

# The example site opts into strict limits (the defaults have none, as Nexios):
# frames over 64 KiB close with 1009, more than 20/s (bursts of 40) with 1008,
# joins past 10000 members or 100 rooms with 4409 / 4413.
NEXIOS_COMPAT: dict = {
    "MAX_MESSAGE_SIZE": 64 * 1024,
    "RATE_LIMIT_MESSAGES": 20,
    "RATE_LIMIT_BURST": 40,
    "RATE_LIMIT_POLICY": "close",
    "MAX_MEMBERS_PER_ROOM": 10000,
    "MAX_ROOMS_PER_CONNECTION": 100,
    "MAX_HISTORY_PAYLOAD": 64 * 1024,
    # Who may join, publish and read which rooms, on every route and view.
    "ROOM_POLICY": "chat.policy.rooms",
    # Other origins whose pages (or apps) open sockets with a ticket (comma-separated).
    "ALLOWED_ORIGINS": [
        o.strip() for o in os.environ.get("TICKET_ALLOWED_ORIGINS", "").split(",") if o.strip()
    ],
}
