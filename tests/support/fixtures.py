"""pytest fixtures for real services; load with ``pytest_plugins = ["tests.support.fixtures"]``.

- ``redis_server`` (session): a :class:`~devservers.RedisServer`; ``.url``,
  ``.restart()`` to simulate an outage on the same port.
- ``redis_url`` (function): the session server's URL, restarted if a test
  left it stopped and FLUSHALLed, so every test starts with an empty Redis.
- ``redis_shards`` (session): ``get(kind="redis") -> [RedisServer] * 3``, the three
  servers of a sharded layer (``kind="valkey"``: ``valkey-server``), started on first
  use, each restarted if a test left it stopped and FLUSHALLed.
- ``postgres_server`` (session): a :class:`~devservers.PostgresServer`;
  ``.url(dbname)``, ``.create_database(name)``.
- ``postgres_url`` (function): URL of a fresh, empty database, dropped after.
- ``daphne_factory`` (function): ``start(env=None, **kwargs) -> DaphneServer``;
  every server it started is stopped at teardown and its log printed (so it
  shows under "Captured stdout teardown" when the test fails).

Missing binaries skip the test, or fail it when ``$CI`` is set.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from devservers import (
    DaphneServer,
    PostgresServer,
    RedisServer,
    postgres_available,
    redis_available,
    valkey_executable,
)

DaphneFactory = Callable[..., DaphneServer]
ShardServers = Callable[[str], list[RedisServer]]
SHARDS = 3


def require_service(name: str, available: bool) -> None:
    """Skip the test when a service is missing; fail instead when ``$CI`` is set."""
    if available:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{name} is required in CI", pytrace=False)
    pytest.skip(f"{name} is not installed")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    require_service("redis-server", redis_available())
    server = RedisServer()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    if not redis_server.running:
        redis_server.start()
    import redis

    client = redis.Redis.from_url(redis_server.url)
    try:
        client.flushall()
    finally:
        client.close()
    return redis_server.url


@pytest.fixture(scope="session")
def redis_shards() -> Iterator[ShardServers]:
    started: dict[str, list[RedisServer]] = {}

    def get(kind: str = "redis") -> list[RedisServer]:
        if kind not in started:
            executable = valkey_executable() if kind == "valkey" else None
            require_service(
                f"{kind}-server", executable is not None if kind == "valkey" else redis_available()
            )
            started[kind] = [RedisServer(executable=executable) for _ in range(SHARDS)]
        for server in started[kind]:
            if not server.running:
                server.start()
            _flush(server.url)
        return started[kind]

    try:
        yield get
    finally:
        for servers in started.values():
            for server in servers:
                server.close()


def _flush(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushall()
    finally:
        client.close()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    require_service("PostgreSQL (initdb, postgres)", postgres_available())
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    if not postgres_server.running:
        postgres_server.start()
    name = f"t_{uuid.uuid4().hex[:16]}"
    url = postgres_server.create_database(name)
    try:
        yield url
    finally:
        if postgres_server.running:
            postgres_server.drop_database(name)


@pytest.fixture
def daphne_factory() -> Iterator[DaphneFactory]:
    started: list[DaphneServer] = []

    def start(env: Mapping[str, str] | None = None, **kwargs: Any) -> DaphneServer:
        server = DaphneServer(env, **kwargs)
        started.append(server)
        return server.start()

    try:
        yield start
    finally:
        for server in reversed(started):
            server.stop()
        for server in started:
            print(f"----- daphne port {server.port} (pid {server.pid}) log -----")
            print(server.log() or "<empty>")
            server.close()
