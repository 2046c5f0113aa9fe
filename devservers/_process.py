"""Process handling shared by the throwaway servers: log file, start/stop/kill, cleanup at exit.

Every server runs in its own session (so a Ctrl-C in the terminal reaches
pytest, which then tears the servers down in order) and, on Linux with
util-linux's ``setpriv``, with a parent-death signal, so it dies with the
process that started it even if that process is SIGKILLed. Servers still running when
the interpreter exits are killed by an ``atexit`` hook.
"""

from __future__ import annotations

import atexit
import contextlib
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

from devservers.ports import free_port

_POLL_INTERVAL = 0.05
_LOG_TAIL_CHARS = 6000


class ServerError(RuntimeError):
    """A service failed to start, or exited early; the message carries its output."""


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
_live: set[ServerProcess] = set()
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


class ServerProcess:
    """Shared process handling: log file, start/stop/kill, context manager."""

    name = "server"
    tmpdir: Path
    # Where it listens and is reached, and an argv prefix it runs under
    # (``ip netns exec NAME``: tests/support/netns.py places servers in network namespaces).
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
