"""A throwaway Redis Sentinel watching a fixture-started primary."""

from __future__ import annotations

import time

import redis

from tests.helpers import TIMEOUT
from tests.servers import RedisServer, ServerError, wait_for_port

MASTER_NAME = "mymaster"


class SentinelServer(RedisServer):
    """``redis-server <conf> --sentinel`` monitoring ``primary`` as ``mymaster``; ``.address``."""

    name = "redis-sentinel"

    def __init__(self, primary: RedisServer) -> None:
        super().__init__()
        self.primary = primary

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _start(self) -> None:
        # Sentinel rewrites its configuration file, so it gets a fresh one each start.
        config = self.tmpdir / "sentinel.conf"
        config.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.tmpdir}\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.primary.port} 1\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} 60000\n"
        )
        proc = self._spawn([self.executable, str(config), "--sentinel"], cwd=self.tmpdir)
        wait_for_port("127.0.0.1", self.port, self.startup_timeout, proc, log_path=self.log_path)
        self._wait_master()

    def _wait_master(self) -> None:
        """Wait until the Sentinel answers with the primary's address."""
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)
        deadline = time.monotonic() + TIMEOUT
        try:
            while time.monotonic() < deadline:
                try:
                    reply = client.sentinel_get_master_addr_by_name(MASTER_NAME)
                    if reply is not None and int(reply[1]) == self.primary.port:
                        return
                except redis.RedisError:
                    pass
                time.sleep(0.05)
        finally:
            client.close()
        raise ServerError(f"Sentinel never reported the primary:\n{self.log()}")
