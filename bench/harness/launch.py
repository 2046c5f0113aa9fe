"""Starting one system: its environment, database, temp dir, processes, URLs and origins."""

from __future__ import annotations

import asyncio
import os
import shlex
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

from bench.harness.procs import BIN, PY, ROOT, Server, ServerGroup, run_setup
from bench.harness.services import Postgres, Redis
from bench.load.loadgen import Origins, Urls
from bench.systems import System, needs_postgres, needs_redis
from devservers import free_port, wait_port

# Variables of the calling environment that must not leak into a server.
_SCRUBBED_ENV = ("DJANGO_SETTINGS_MODULE", "REDIS_URL", "DATABASE_URL")


class Unavailable(RuntimeError):
    """A service the system needs (redis-server, PostgreSQL, its database) is missing."""


class Launch:
    """Everything one system needs to be started (and restarted) on fresh ports.

    Use as a context manager: it creates the system's PostgreSQL database and temp dir on
    entry and drops the database on exit. ``start()`` runs ``setup`` and starts the
    processes; the caller stops the returned group.
    """

    def __init__(self, system: System, work: Path, redis: Redis | None, postgres: Postgres | None) -> None:
        self.system = system
        self.work = work
        self.redis = redis if needs_redis(system) else None
        self.postgres = postgres if needs_postgres(system) else None
        if needs_redis(system) and redis is None:
            raise Unavailable("needs {redis_url} but redis-server is unavailable")
        if needs_postgres(system) and postgres is None:
            raise Unavailable("needs {postgres_url} but PostgreSQL is unavailable")
        self.n_procs = max(1, system.processes)
        self.log_path = work / f"{system.name}.log"  # setup output, and the server's if only one
        self.postgres_db = ""
        self.values: dict[str, str] = {}
        self.env: dict[str, str] = {}
        self.cmd = ""
        self.ports: list[int] = []

    def __enter__(self) -> Launch:
        postgres_url = ""
        if self.postgres is not None:
            self.postgres_db = f"bench_{self.system.name}_{uuid.uuid4().hex[:8]}"
            try:
                postgres_url = self.postgres.create(self.postgres_db)
            except Exception as exc:
                self.postgres_db = ""
                raise Unavailable(f"could not create database: {exc}") from exc
        tmpdir = Path(tempfile.mkdtemp(prefix=f"{self.system.name}-", dir=self.work))
        self.values = {
            "python": PY,
            "bin": BIN,
            "redis_url": self.redis.url if self.redis is not None else "",
            "postgres_url": postgres_url,
            "tmpdir": str(tmpdir),
            "root": str(ROOT),
            "port": "0",
        }
        env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        env.update({k: v.format(**self.values) for k, v in self.system.env.items()})
        self.env = env
        return self

    def __exit__(self, *exc: object) -> None:
        if self.postgres is not None and self.postgres_db:
            self.postgres.drop(self.postgres_db)

    @property
    def database_url(self) -> str:
        """The ``DATABASE_URL`` the servers get (empty when the system sets none)."""
        return self.env.get("DATABASE_URL", "")

    def proc_log(self, i: int) -> Path:
        """Log file of process ``i`` (the setup log itself when there is one process)."""
        return self.log_path if self.n_procs == 1 else self.work / f"{self.system.name}.{i}.log"

    def logs(self) -> str | list[str]:
        """The log paths relative to the repository root, for the JSON."""
        paths = [self.log_path, *map(self.proc_log, range(self.n_procs))]
        logs = sorted({os.path.relpath(p, ROOT) for p in paths})
        return logs[0] if len(logs) == 1 else logs

    def probes(self) -> dict[str, Callable[[], float]]:
        """CPU probes of the services this system uses (counted as ours, not as *other*)."""
        out: dict[str, Callable[[], float]] = {}
        if self.redis is not None:
            out["redis"] = self.redis.server.cpu_seconds
        if self.postgres is not None:
            out["postgres"] = self.postgres.cpu_seconds
        return out

    async def start(self) -> ServerGroup:
        """Run ``setup``, start every process on a fresh port and wait until all listen."""
        system = self.system
        self.ports = [free_port() for _ in range(self.n_procs)]
        vals = {**self.values, "port": str(self.ports[0])}
        if system.setup:  # once per start, not per process: the processes share everything
            run_setup([c.format(**vals) for c in system.setup], self.env, self.log_path)
        servers = []
        for i, port in enumerate(self.ports):
            argv = shlex.split(system.cmd.format(**{**vals, "port": str(port)}))
            if i == 0:
                self.cmd = shlex.join(argv)
            servers.append(Server(f"{system.name}.{i}", argv, self.env, self.proc_log(i)))
        group = ServerGroup(servers)
        group.start()
        for server, port in zip(servers, self.ports, strict=True):
            ok = await asyncio.to_thread(wait_port, port, "127.0.0.1", system.start_timeout, server.alive)
            if not ok:
                code = server.proc.poll() if server.proc is not None else None
                group.stop()
                why = (
                    f"exited with code {code} before opening port {port}"
                    if code is not None
                    else f"did not open port {port} within {system.start_timeout:g}s"
                )
                raise RuntimeError(f"{why}; log tail:\n{server.tail()}")
        return group

    def urls(self, room: str) -> Urls:
        """The room's URL on each process (a plain string when there is one)."""
        found = [f"ws://127.0.0.1:{port}" + self.system.path.format(room=room) for port in self.ports]
        return found[0] if len(found) == 1 else found

    def origins(self) -> Origins:
        """The Origin header for each process (same-origin by default), or None."""
        if self.system.origin is None:
            return None
        found = [self.system.origin.format(port=port) for port in self.ports]
        return found[0] if len(found) == 1 else found
