"""Throwaway redis-server and PostgreSQL for the systems that mention them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil

from bench.harness.procs import Server
from bench.systems import System, needs_postgres, needs_redis
from devservers import free_port, wait_port


class Redis:
    """A throwaway redis-server for the channels_redis variants."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server not found on PATH")
        argv = [
            exe,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--maxclients",
            "20000",
            "--protected-mode",
            "no",
        ]
        self.server = Server("redis", argv, dict(os.environ), log_dir / "redis.log")
        self.server.start()
        if not wait_port(self.port, timeout=15, alive=self.server.alive):
            self.server.stop()
            raise RuntimeError(f"redis-server did not start:\n{self.server.tail()}")
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False)
        self.version = out.stdout.strip()

    def flush(self) -> None:
        """FLUSHALL."""
        import redis

        client = redis.Redis.from_url(self.url)
        try:
            client.flushall()
        finally:
            client.close()

    def stop(self) -> None:
        """Stop redis-server."""
        self.server.stop()


class Postgres:
    """A throwaway PostgreSQL cluster for the ``{postgres_url}`` systems.

    The test suite's ``devservers.PostgresServer``: initdb into a temp dir under /tmp,
    trust auth, fsync off, run as the ``postgres`` user when we are root. Each system gets
    a fresh database, dropped when the system is done.
    """

    def __init__(self) -> None:
        from devservers import PostgresServer, find_pg_binary

        # bench rooms: 2 processes x (hub + history writer + request threads) fit in 200
        self.server = PostgresServer(default_db="postgres").start()
        exe = find_pg_binary("postgres")
        out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=False)
        self.version = out.stdout.strip()

    @property
    def port(self) -> int:
        """The server's TCP port."""
        return int(self.server.port)

    def create(self, name: str) -> str:
        """CREATE DATABASE ``name``; returns its URL."""
        return str(self.server.create_database(name))

    def drop(self, name: str) -> None:
        """DROP DATABASE ``name`` (errors ignored: it is cleanup)."""
        with contextlib.suppress(Exception):
            self.server.drop_database(name)

    def cpu_seconds(self) -> float:
        """The postmaster, its live backends, and the backends that already exited."""
        pid = self.server.pid
        if pid is None:
            return 0.0
        total = 0.0
        try:
            root = psutil.Process(pid)
            t = root.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
            for child in root.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    c = child.cpu_times()
                    total += c.user + c.system
        except psutil.Error:
            pass
        return total

    def stop(self) -> None:
        """Stop the cluster and remove its directory."""
        self.server.close()


class Services:
    """The redis-server and PostgreSQL of one run, started only if some system needs them."""

    def __init__(self) -> None:
        self.redis: Redis | None = None
        self.postgres: Postgres | None = None

    @classmethod
    async def start(cls, systems: Sequence[System], work: Path, meta: dict[str, Any]) -> Services:
        """Start what ``systems`` mention; a service that fails is left None (and said)."""
        self = cls()
        if any(needs_redis(s) for s in systems):
            try:
                self.redis = Redis(work)
                meta["redis_server"] = self.redis.version.split(" sha=")[0]
                print(f"redis-server on {self.redis.url}", flush=True)
            except Exception as exc:
                print(f"redis unavailable: {exc}", flush=True)
        if any(needs_postgres(s) for s in systems):
            try:
                self.postgres = await asyncio.to_thread(Postgres)
                meta["postgres_server"] = self.postgres.version
                print(f"PostgreSQL on port {self.postgres.port}", flush=True)
            except Exception as exc:
                print(f"PostgreSQL unavailable: {str(exc)[:500]}", flush=True)
        return self

    def flush_redis(self, system: System) -> None:
        """FLUSHALL before a system that uses Redis, so no state leaks between systems."""
        if self.redis is not None and needs_redis(system):
            self.redis.flush()

    def stop(self) -> None:
        """Stop both services."""
        if self.redis is not None:
            self.redis.stop()
        if self.postgres is not None:
            self.postgres.stop()
