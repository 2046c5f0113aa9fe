"""A served site under test: its environment, its migrated SQLite file, daphne, a client.

``server_env(db, "tests.sites.<name>.settings")`` is the environment of a one-process
daphne (or ``manage.py``) on SQLite with the in-memory layer; ``open_ws(server, path)`` a
``websockets`` client with the server's own Origin. ``start_server(migrated_database(tmp))``
runs daphne on the security site (``tests/sites/security``: the project's application plus
``/sec/stats``); ``server_stats`` reads that process.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import tempfile
import typing
import urllib.request
import uuid
from collections.abc import Sequence
from pathlib import Path

from websockets.asyncio.client import connect

from devservers import DaphneServer, run_manage
from tests.support.helpers import TIMEOUT

SECURITY_SETTINGS = "tests.sites.security.settings"
SECURITY_APP = "tests.sites.security.asgi:application"


def server_env(db_path: Path, settings_module: str, *, debug: bool = False, **extra: str) -> dict[str, str]:
    """The environment of a one-process daphne (or manage.py) on SQLite ``db_path``, in-memory layer."""
    return {
        "DATABASE_URL": f"sqlite:///{db_path}",
        "DJANGO_SETTINGS_MODULE": settings_module,
        "REDIS_URL": "",
        "DEBUG": "1" if debug else "0",
        "ALLOWED_HOSTS": "localhost,127.0.0.1",
        **extra,
    }


def migrated(db_path: Path, settings_module: str, *, debug: bool = False) -> dict[str, str]:
    """Migrate a new SQLite file for a server; return the server's environment."""
    env = server_env(db_path, settings_module, debug=debug)
    run_manage("migrate", "--noinput", env=env)
    return env


class Served(typing.Protocol):
    """What a client needs of a server: a daphne, or nginx in front of several."""

    @property
    def url(self) -> str: ...
    def ws_url(self, path: str = "/") -> str: ...


def open_ws(server: Served, path: str, **kwargs: typing.Any) -> connect:
    """A ``websockets`` client for ``path`` with the server's own Origin: await it or ``async with`` it."""
    kwargs.setdefault("origin", server.url)
    kwargs.setdefault("open_timeout", TIMEOUT)
    return connect(server.ws_url(path), **kwargs)


_template: Path | None = None


def migrated_database(directory: Path) -> Path:
    """A migrated SQLite file in ``directory`` (migrated once per test process, then copied)."""
    global _template
    if _template is None or not _template.exists():
        template_dir = Path(tempfile.mkdtemp(prefix="sec-template-"))
        template = template_dir / "template.sqlite3"
        run_manage("migrate", "--noinput", env=server_env(template, SECURITY_SETTINGS))
        with sqlite3.connect(template) as db:  # fold the WAL into the file before copying it
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        _template = template
    path = directory / f"sec-{uuid.uuid4().hex[:8]}.sqlite3"
    shutil.copyfile(_template, path)
    return path


def start_server(db_path: Path, *, extra_args: Sequence[str] = (), **env: str) -> DaphneServer:
    """daphne serving ``tests.sites.security.asgi:application`` on ``db_path`` (the caller stops it)."""
    return DaphneServer(
        {**server_env(db_path, SECURITY_SETTINGS), **env}, app=SECURITY_APP, extra_args=extra_args
    ).start()


def server_stats(server: DaphneServer, *, collect: bool = False) -> dict[str, typing.Any]:
    """``GET /sec/stats`` of the server (see tests/sites/security/asgi.py)."""
    url = f"{server.url}/sec/stats" + ("?gc=1" if collect else "")
    with urllib.request.urlopen(url, timeout=30) as response:
        return typing.cast(dict[str, typing.Any], json.loads(response.read()))
