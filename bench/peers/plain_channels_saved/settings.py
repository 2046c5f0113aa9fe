"""The plain peer's settings plus a database, configured as the project configures its own.

``DATABASE_URL`` is required (SQLite file or PostgreSQL). SQLite gets the project's options
(WAL, IMMEDIATE transactions, 20 s busy timeout), so both systems write to the same kind
of database the same way.
"""

from __future__ import annotations

import os
from typing import Any

import dj_database_url

from bench.peers.plain_channels.settings import *  # noqa: F403

INSTALLED_APPS = ["channels", "bench.peers.plain_channels_saved"]
ASGI_APPLICATION = "bench.peers.plain_channels_saved.asgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

_db: dict[str, Any] = dict(dj_database_url.parse(os.environ["DATABASE_URL"], conn_max_age=0))
if _db["ENGINE"] == "django.db.backends.sqlite3":
    _db.setdefault("OPTIONS", {}).update(
        {"transaction_mode": "IMMEDIATE", "timeout": 20, "init_command": "PRAGMA journal_mode=WAL;"}
    )
DATABASES = {"default": _db}
