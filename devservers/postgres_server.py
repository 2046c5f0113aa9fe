"""A throwaway PostgreSQL cluster on 127.0.0.1 with trust auth, and where its binaries are."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from devservers._process import (
    _POLL_INTERVAL,
    ServerError,
    ServerProcess,
    _exited_error,
    _launch_prefix,
    wait_for_port,
)
from devservers.ports import free_port


def find_pg_binary(name: str) -> str | None:
    """Path of a PostgreSQL server binary (``initdb``, ``postgres``, ``pg_ctl``...).

    Looks on ``$PATH`` first, then in Debian's ``/usr/lib/postgresql/<ver>/bin``
    (newest version first), where the server binaries live off ``$PATH``.
    """
    found = shutil.which(name)
    if found:
        return found

    def version(path: str) -> tuple[int, ...]:
        ver = Path(path).parent.parent.name
        return tuple(int(p) for p in ver.split(".") if p.isdigit())

    candidates = glob.glob(f"/usr/lib/postgresql/*/bin/{name}")
    candidates = [c for c in candidates if os.access(c, os.X_OK)]
    return max(candidates, key=version) if candidates else None


def postgres_available() -> bool:
    return find_pg_binary("initdb") is not None and find_pg_binary("postgres") is not None


class PostgresServer(ServerProcess):
    """A throwaway PostgreSQL cluster on 127.0.0.1 with trust auth.

    When run as root, ``initdb`` and ``postgres`` run as ``run_as`` (default
    ``postgres``); as any other user they run as that user.
    ``PostgresServer().start()`` creates database ``default_db`` ("test");
    ``.url(dbname)``, ``.create_database(name)``, ``.drop_database(name)``,
    ``.stop()``, ``.close()`` (stop and remove the cluster).
    """

    name = "postgres"
    # SIGINT is PostgreSQL's "fast" shutdown: abort transactions, disconnect.
    stop_signal = signal.SIGINT
    stop_timeout = 30.0

    def __init__(
        self,
        port: int | None = None,
        *,
        default_db: str = "test",
        run_as: str | None = "postgres",
        startup_timeout: float = 60.0,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        initdb, postgres = find_pg_binary("initdb"), find_pg_binary("postgres")
        if initdb is None or postgres is None:
            raise ServerError("PostgreSQL server binaries (initdb, postgres) not found")
        self.initdb, self.postgres = initdb, postgres
        self._auto_port = port is None
        self.port = port or free_port()
        self.default_db = default_db
        self.user = "postgres"  # the database superuser (initdb -U)
        self.run_as = run_as if os.geteuid() == 0 else None
        self.startup_timeout = startup_timeout
        self.settings = {
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            **(settings or {}),
        }
        if self.run_as is not None:
            try:
                self._group_of(self.run_as)
            except KeyError:
                raise ServerError(
                    f"running as root, PostgreSQL must run as user {self.run_as!r}, which does not "
                    "exist (the Debian postgresql package creates 'postgres')"
                ) from None
        # Under /tmp, world-traversable, owned by the postgres user when root.
        self._make_tmpdir("test-postgres-")
        self.tmpdir.chmod(0o755)
        if self.run_as is not None:
            shutil.chown(self.tmpdir, user=self.run_as, group=self._group_of(self.run_as))
        self.datadir = self.tmpdir / "data"
        self.log_path = self.tmpdir / "postgres.log"
        self._initialized = False
        self._default_db_created = False

    @staticmethod
    def _group_of(user: str) -> int:
        import pwd

        return pwd.getpwnam(user).pw_gid

    def url(self, dbname: str | None = None) -> str:
        return f"postgres://{self.user}@{self.host}:{self.port}/{dbname or self.default_db}"

    def _initdb(self) -> None:
        argv = [
            *_launch_prefix(self.run_as),
            self.initdb,
            "-D", str(self.datadir),
            "-A", "trust",
            "-U", self.user,
            "-E", "UTF8",
            "--locale=C",
            "-N",  # --no-sync: a throwaway cluster need not survive a crash
        ]  # fmt: skip
        result = subprocess.run(
            argv,
            cwd=self.tmpdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            check=False,
        )
        if result.returncode != 0:
            raise ServerError(
                f"initdb failed with code {result.returncode}:\n{result.stdout.decode(errors='replace')}"
            )
        self._initialized = True

    def _start(self) -> None:
        if not self._initialized:
            self._initdb()
        argv = [
            self.postgres,
            "-D", str(self.datadir),
            "-p", str(self.port),
            "-k", str(self.tmpdir),
        ]  # fmt: skip
        for key, value in {"listen_addresses": self.host, **self.settings}.items():
            argv += ["-c", f"{key}={value}"]
        # SIGQUIT on parent death: immediate shutdown that also ends backends.
        proc = self._spawn(argv, cwd=self.tmpdir, pdeathsig="QUIT", run_as=self.run_as)
        self._wait_ready(proc)
        if not self._default_db_created:
            if self.default_db != "postgres":
                self.create_database(self.default_db)
            self._default_db_created = True

    def _wait_ready(self, proc: subprocess.Popen[bytes]) -> None:
        """Poll until a real connection succeeds (the port opens before recovery ends)."""
        wait_for_port(self.host, self.port, self.startup_timeout, proc, log_path=self.log_path)
        deadline = time.monotonic() + self.startup_timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise _exited_error("postgres", proc, self.log_path)
            try:
                self._execute("postgres", "SELECT 1")
                return
            except Exception as exc:  # psycopg.OperationalError while starting up
                last_error = exc
            time.sleep(_POLL_INTERVAL)
        raise ServerError(f"postgres not ready after {self.startup_timeout}s ({last_error}):\n{self.log()}")

    def _execute(self, dbname: str, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url(dbname), autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.encode())

    def create_database(self, name: str) -> str:
        """CREATE DATABASE ``name``; returns its URL."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url("postgres"), autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """DROP DATABASE IF EXISTS ``name`` WITH (FORCE): open connections are cut."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url("postgres"), autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def _postmaster_pid(self) -> int | None:
        """The postmaster's pid (differs from ``self.pid`` when runuser forked)."""
        try:
            first = (self.datadir / "postmaster.pid").read_text().splitlines()[0]
            return int(first)
        except (OSError, ValueError, IndexError):
            return None

    def _terminate(self, sig: int, timeout: float) -> None:
        postmaster = self._postmaster_pid() if self.running else None
        if postmaster is not None and self.proc is not None and postmaster != self.proc.pid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(postmaster, sig)
        super()._terminate(sig, timeout)
