"""Start and stop real services (redis-server, PostgreSQL, daphne) for tests.

Plain helpers with no pytest dependency beyond ``pytest.skip``/``pytest.fail``
in :func:`require_service`; the fixtures live in ``tests/fixtures_services.py``.

Every server runs in its own session (so a Ctrl-C in the terminal reaches
pytest, which then tears the servers down in order) and, on Linux with
util-linux's ``setpriv``, with a parent-death signal, so it dies with the
test process even if that process is SIGKILLed. Servers still running when
the interpreter exits are killed by an ``atexit`` hook.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

REPO_ROOT = Path(__file__).resolve().parent.parent

__all__ = [
    "REPO_ROOT",
    "DaphneServer",
    "PostgresServer",
    "RedisServer",
    "ServerError",
    "find_pg_binary",
    "free_port",
    "postgres_available",
    "redis_available",
    "require_service",
    "run_manage",
    "wait_for_port",
]

_POLL_INTERVAL = 0.05
_LOG_TAIL_CHARS = 6000


class ServerError(RuntimeError):
    """A service failed to start, or exited early; the message carries its output."""


# --------------------------------------------------------------------------
# Generic helpers
# --------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _read_tail(path: Path | None, limit: int = _LOG_TAIL_CHARS) -> str:
    if path is None:
        return ""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<could not read {path}: {exc}>"
    if len(text) > limit:
        text = "...\n" + text[-limit:]
    return text


def _proc_output(proc: subprocess.Popen[Any], log_path: Path | None) -> str:
    """What the process printed: its log file, or its piped stdout/stderr."""
    if log_path is not None:
        return _read_tail(log_path)
    if proc.poll() is None:  # reading its pipes would block until it exits
        return "<process still running; pass log_path to see its output>"
    parts = []
    for stream in (proc.stdout, proc.stderr):
        if stream is not None and not stream.closed:
            with contextlib.suppress(OSError, ValueError):
                data = stream.read()
                parts.append(data.decode(errors="replace") if isinstance(data, bytes) else data)
    return "".join(parts)[-_LOG_TAIL_CHARS:]


def _exited_error(what: str, proc: subprocess.Popen[Any], log_path: Path | None) -> ServerError:
    return ServerError(
        f"{what} exited with code {proc.returncode} before it was ready; output:\n"
        f"{_proc_output(proc, log_path)}"
    )


def wait_for_port(
    host: str,
    port: int,
    timeout: float,
    proc: subprocess.Popen[Any] | None = None,
    *,
    log_path: Path | None = None,
) -> None:
    """Poll until a TCP connect to ``host:port`` succeeds.

    Raises :class:`ServerError` (with the process output: ``log_path`` if
    given, else its piped stdout/stderr) as soon as ``proc`` exits, and
    :class:`TimeoutError` after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    last_error: OSError | None = None
    while True:
        if proc is not None and proc.poll() is not None:
            raise _exited_error(f"process {proc.args!r}", proc, log_path)
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            output = _proc_output(proc, log_path) if proc is not None else ""
            raise TimeoutError(
                f"{host}:{port} not accepting connections after {timeout}s "
                f"(last error: {last_error}); output:\n{output}"
            )
        time.sleep(_POLL_INTERVAL)


def require_service(name: str, available: bool) -> None:
    """Skip the test when a service is missing; fail instead when ``$CI`` is set."""
    if available:
        return
    import pytest

    if os.environ.get("CI"):
        pytest.fail(f"{name} is required in CI", pytrace=False)
    pytest.skip(f"{name} is not installed")


def redis_available() -> bool:
    return shutil.which("redis-server") is not None


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


def _runuser_path() -> str | None:
    found = shutil.which("runuser")
    if found:
        return found
    return next((p for p in ("/usr/sbin/runuser", "/sbin/runuser") if os.access(p, os.X_OK)), None)


def _launch_prefix(run_as: str | None = None, pdeathsig: str | None = None) -> list[str]:
    """argv prefix that runs a command as ``run_as`` (only when we are root) and,
    on Linux with util-linux's ``setpriv``, with parent-death signal ``pdeathsig``.

    One ``setpriv`` does both: the kernel clears the parent-death signal on
    a uid change, so it must be set after the switch, which setpriv does.
    """
    become = run_as is not None and os.geteuid() == 0
    setpriv = shutil.which("setpriv") if sys.platform.startswith("linux") else None
    if setpriv:
        argv = [setpriv]
        if become:
            argv += [f"--reuid={run_as}", f"--regid={run_as}", "--init-groups"]
        if pdeathsig:
            argv.append(f"--pdeathsig={pdeathsig}")
        return [*argv, "--"] if len(argv) > 1 else []
    if become:
        runuser = _runuser_path()
        if runuser is None:
            raise ServerError(f"running as root but neither setpriv nor runuser can become {run_as!r}")
        return [runuser, "-u", str(run_as), "--"]
    return []


# Servers with a live process (strong refs: a dropped handle must still be killed).
_live: set[_Server] = set()
# Temp dirs of servers not yet closed; removed at exit.
_tmpdirs: set[Path] = set()
_OWNER_PID = os.getpid()


@atexit.register
def _kill_leftovers() -> None:
    if os.getpid() != _OWNER_PID:  # a forked child exiting must not kill our servers
        return
    for server in list(_live):
        with contextlib.suppress(Exception):
            server.kill()
    for path in list(_tmpdirs):
        shutil.rmtree(path, ignore_errors=True)


class _Server:
    """Shared process handling: log file, start/stop/kill, context manager."""

    name = "server"
    tmpdir: Path
    # Where it listens and is reached, and an argv prefix it runs under
    # (``ip netns exec NAME``: tests/netns.py places servers in network namespaces).
    host = "127.0.0.1"
    netns_exec: Sequence[str] = ()
    stop_signal = signal.SIGTERM
    stop_timeout = 10.0

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self.log_path: Path | None = None
        self._started_once = False

    def _make_tmpdir(self, prefix: str) -> Path:
        # Under /tmp explicitly: PostgreSQL needs a path the postgres user can reach.
        path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp" if os.path.isdir("/tmp") else None))
        _tmpdirs.add(path)
        self.tmpdir = path
        return path

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        """Everything the server has printed so far."""
        if self.log_path is None:
            return ""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _spawn(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str] | None = None,
        pdeathsig: str | None = "KILL",
        run_as: str | None = None,
    ) -> subprocess.Popen[bytes]:
        assert self.log_path is not None
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in _reap
        # The kernel sends the parent-death signal when the spawning *thread*
        # exits, so only set it from the main thread: a server (re)started via
        # asyncio.to_thread() would otherwise die with that executor thread.
        if threading.current_thread() is not threading.main_thread():
            pdeathsig = None
        self.proc = subprocess.Popen(
            [*self.netns_exec, *_launch_prefix(run_as, pdeathsig), *argv],
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _live.add(self)
        return self.proc

    port: int
    _auto_port: bool
    _PORT_ATTEMPTS = 3

    def _start(self) -> None:
        raise NotImplementedError

    def start(self) -> Self:
        """Start (no-op if running) and wait until ready.

        On failure the process is killed and the exception carries its log;
        if the server never ran, its temp dir is removed too. An auto-chosen
        port lost to a race ("Address already in use") on the first start is
        replaced by a new free port, up to three attempts; later starts (e.g.
        :meth:`RedisServer.restart`) always keep the port.
        """
        if self.running:
            return self
        attempts = self._PORT_ATTEMPTS if self._auto_port and not self._started_once else 1
        for attempt in range(1, attempts + 1):
            log_mark = len(self.log())
            try:
                self._start()
            except BaseException as exc:
                self.kill()
                lost_port = isinstance(exc, ServerError | TimeoutError) and (
                    "Address already in use" in self.log()[log_mark:]
                )
                if lost_port and attempt < attempts:
                    self.port = free_port()
                    continue
                if not self._started_once:
                    self.close()
                raise
            self._started_once = True
            break
        return self

    def _signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)

    def _reap(self) -> None:
        _live.discard(self)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def _terminate(self, sig: int, timeout: float) -> None:
        """Send ``sig``, wait up to ``timeout``, then SIGKILL; always reaps."""
        if self.proc is None:
            return
        self._signal(sig)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        finally:
            self._reap()

    def stop(self) -> None:
        """Graceful stop (``stop_signal``, then SIGKILL after ``stop_timeout``)."""
        self._terminate(self.stop_signal, self.stop_timeout)

    def kill(self) -> None:
        """SIGKILL the server and reap it."""
        self._terminate(signal.SIGKILL, 10)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop the server and delete its temp dir (data, socket, log)."""
        self.stop()
        _tmpdirs.discard(self.tmpdir)
        shutil.rmtree(self.tmpdir, ignore_errors=True)


# --------------------------------------------------------------------------
# Redis
# --------------------------------------------------------------------------


class RedisServer(_Server):
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


# --------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------


class PostgresServer(_Server):
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


# --------------------------------------------------------------------------
# daphne
# --------------------------------------------------------------------------


class DaphneServer(_Server):
    """``daphne`` serving an ASGI app (default ``project.asgi:application``).

    Runs ``python -m daphne`` with this interpreter, cwd = repo root, env =
    ``os.environ`` + ``env``. ``.start()`` returns once the port is open and
    an HTTP ``GET /`` gets any response. ``.url``, ``.ws_url(path)``,
    ``.pid``, ``.log()``, ``.stop()`` (SIGTERM, then SIGKILL), ``.kill()``.
    """

    name = "daphne"
    stop_timeout = 10.0

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        app: str = "project.asgi:application",
        port: int | None = None,
        cwd: Path | str = REPO_ROOT,
        startup_timeout: float = 30.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        super().__init__()
        self.extra_env = dict(env or {})
        self.app = app
        self._auto_port = port is None
        self.port = port or free_port()
        self.cwd = Path(cwd)
        self.startup_timeout = startup_timeout
        self.extra_args = list(extra_args)
        self._make_tmpdir("test-daphne-")
        self.log_path = self.tmpdir / "daphne.log"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def ws_url(self, path: str = "/") -> str:
        return f"ws://{self.host}:{self.port}/{path.lstrip('/')}"

    def _start(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.extra_env}
        argv = [
            sys.executable, "-m", "daphne",
            "-b", self.host,
            "-p", str(self.port),
            *self.extra_args,
            self.app,
        ]  # fmt: skip
        proc = self._spawn(argv, cwd=self.cwd, env=env)
        wait_for_port(self.host, self.port, self.startup_timeout, proc, log_path=self.log_path)
        self._wait_http(proc)

    def _wait_http(self, proc: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + self.startup_timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise _exited_error("daphne", proc, self.log_path)
            conn = http.client.HTTPConnection(self.host, self.port, timeout=5)
            try:
                conn.request("GET", "/")
                conn.getresponse().read()
                return
            except (OSError, http.client.HTTPException) as exc:
                last_error = exc
            finally:
                conn.close()
            time.sleep(_POLL_INTERVAL)
        raise ServerError(
            f"daphne on port {self.port} never answered GET / in {self.startup_timeout}s "
            f"({last_error}); log:\n{_read_tail(self.log_path)}"
        )


# --------------------------------------------------------------------------
# manage.py
# --------------------------------------------------------------------------


def run_manage(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run ``python manage.py *args`` in the repo root with ``os.environ`` + ``env``.

    E.g. ``run_manage("migrate", "--noinput", env={"DATABASE_URL": url})``.
    Raises :class:`ServerError` with the output if it exits non-zero.
    """
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise ServerError(f"manage.py {' '.join(args)} failed ({result.returncode}):\n{result.stdout}")
    return result


def pgbouncer_available() -> bool:
    return shutil.which("pgbouncer") is not None or os.path.exists("/usr/sbin/pgbouncer")


class PgBouncerServer(_Server):
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
