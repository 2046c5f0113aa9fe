"""A throwaway PgBouncer in front of a ``PostgresServer``, for tests of pooled connections."""

from __future__ import annotations

import os
import shutil
import signal

from devservers._process import ServerError, ServerProcess, wait_for_port
from devservers.ports import free_port
from devservers.postgres_server import PostgresServer


def pgbouncer_available() -> bool:
    """Whether Debian's pgbouncer is installed (it lives in /usr/sbin, not always on PATH)."""
    return shutil.which("pgbouncer") is not None or os.path.exists("/usr/sbin/pgbouncer")


class PgBouncerServer(ServerProcess):
    """A throwaway PgBouncer on 127.0.0.1 in front of a ``PostgresServer`` (trust auth).

    ``pool_mode`` is ``transaction`` by default and ``pool_size`` 1, so every
    client shares one server connection: what one session leaves set there,
    the next client sees. ``.url(dbname)`` reaches ``dbname`` through it.
    """

    name = "pgbouncer"
    stop_signal = signal.SIGINT  # immediate shutdown

    def __init__(
        self,
        postgres: PostgresServer,
        port: int | None = None,
        *,
        pool_mode: str = "transaction",
        pool_size: int = 1,
        startup_timeout: float = 15.0,
    ) -> None:
        super().__init__()
        exe = shutil.which("pgbouncer") or (
            "/usr/sbin/pgbouncer" if os.path.exists("/usr/sbin/pgbouncer") else None
        )
        if exe is None:
            raise ServerError("pgbouncer not found")
        self.executable = exe
        self.postgres = postgres
        self._auto_port = port is None
        self.port = port or free_port()
        self.pool_mode, self.pool_size = pool_mode, pool_size
        self.startup_timeout = startup_timeout
        # It refuses to run as root: as root it runs as the postgres user, like PostgreSQL.
        self.run_as = "postgres" if os.geteuid() == 0 else None
        self._make_tmpdir("test-pgbouncer-")
        self.tmpdir.chmod(0o777)
        self.log_path = self.tmpdir / "pgbouncer.log"

    def url(self, dbname: str | None = None) -> str:
        return f"postgres://{self.postgres.user}@{self.host}:{self.port}/{dbname or self.postgres.default_db}"

    def _start(self) -> None:
        ini = self.tmpdir / "pgbouncer.ini"
        ini.write_text(
            "[databases]\n"
            f"* = host={self.postgres.host} port={self.postgres.port}\n"
            "[pgbouncer]\n"
            f"listen_addr = {self.host}\nlisten_port = {self.port}\n"
            f"unix_socket_dir = {self.tmpdir}\n"
            "auth_type = trust\n"
            f"auth_file = {self.tmpdir / 'users.txt'}\n"
            f"pool_mode = {self.pool_mode}\ndefault_pool_size = {self.pool_size}\n"
            "max_client_conn = 100\n"
            # Django sends these at connect; PgBouncer must pass them, not refuse them.
            "ignore_startup_parameters = extra_float_digits,options\n"
        )
        (self.tmpdir / "users.txt").write_text(f'"{self.postgres.user}" ""\n')
        proc = self._spawn([self.executable, str(ini)], cwd=self.tmpdir, run_as=self.run_as)
        wait_for_port(self.host, self.port, self.startup_timeout, proc, log_path=self.log_path)
