"""A throwaway Redis Sentinel watching a fixture-started primary."""

from __future__ import annotations

import time

import redis

from devservers._process import ServerError, wait_for_port
from devservers.redis_server import RedisServer

MASTER_NAME = "mymaster"
# How long a started Sentinel may take to report the primary.
READY_TIMEOUT = 10.0


class SentinelServer(RedisServer):
    """``redis-server <conf> --sentinel`` monitoring ``primary`` as ``mymaster``; ``.address``.

    ``down_after`` (ms): silence after which the primary is taken for down and,
    with a replica, failed over (the default never does so in a test's time).
    """

    name = "redis-sentinel"

    def __init__(self, primary: RedisServer, *, down_after: int = 60000) -> None:
        super().__init__()
        self.primary = primary
        self.down_after = down_after

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _start(self) -> None:
        # Sentinel rewrites its configuration file, so it gets a fresh one each start.
        config = self.tmpdir / "sentinel.conf"
        config.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.tmpdir}\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.primary.port} 1\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} {self.down_after}\n"
            f"sentinel failover-timeout {MASTER_NAME} 10000\n"
        )
        proc = self._spawn([self.executable, str(config), "--sentinel"], cwd=self.tmpdir)
        wait_for_port("127.0.0.1", self.port, self.startup_timeout, proc, log_path=self.log_path)
        self._wait_master()

    def master_port(self) -> int | None:
        """The port of the primary this Sentinel names now (None if it does not answer)."""
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)
        try:
            reply = client.sentinel_get_master_addr_by_name(MASTER_NAME)
            return int(reply[1]) if isinstance(reply, tuple) else None
        except redis.RedisError:
            return None
        finally:
            client.close()

    def _wait_master(self) -> None:
        """Wait until the Sentinel answers with the primary's address."""
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)
        deadline = time.monotonic() + READY_TIMEOUT
        try:
            while time.monotonic() < deadline:
                try:
                    reply = client.sentinel_get_master_addr_by_name(MASTER_NAME)
                    if isinstance(reply, tuple) and int(reply[1]) == self.primary.port:
                        return
                except redis.RedisError:
                    pass
                time.sleep(0.05)
        finally:
            client.close()
        raise ServerError(f"Sentinel never reported the primary:\n{self.log()}")
