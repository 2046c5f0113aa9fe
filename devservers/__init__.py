"""Throwaway servers for the tests and the bench: Redis, Sentinel, PostgreSQL, daphne.

Plain classes with no pytest dependency (the fixtures live in ``tests/support/fixtures.py``):
``RedisServer().start()``, ``PostgresServer().start()``, ``DaphneServer(env, app=...).start()``,
each a context manager that stops the process and removes its temp dir; ``free_port``,
``wait_for_port``, ``raise_nofile_limit``.
"""

from devservers._process import ServerError, ServerProcess, wait_for_port
from devservers.daphne_server import REPO_ROOT, DaphneServer, run_manage
from devservers.limits import NOFILE_TARGET, raise_nofile_limit
from devservers.pgbouncer_server import PgBouncerServer, pgbouncer_available
from devservers.ports import free_port, port_open, wait_port
from devservers.postgres_server import PostgresServer, find_pg_binary, postgres_available
from devservers.redis_server import RedisServer, redis_available, valkey_executable
from devservers.sentinel import MASTER_NAME, SentinelServer

__all__ = [
    "MASTER_NAME",
    "NOFILE_TARGET",
    "REPO_ROOT",
    "DaphneServer",
    "PgBouncerServer",
    "PostgresServer",
    "RedisServer",
    "SentinelServer",
    "ServerError",
    "ServerProcess",
    "find_pg_binary",
    "free_port",
    "pgbouncer_available",
    "port_open",
    "postgres_available",
    "raise_nofile_limit",
    "redis_available",
    "run_manage",
    "valkey_executable",
    "wait_for_port",
    "wait_port",
]
