"""Server subprocesses of the bench: one process group each, logs in files, RSS and CPU."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import BinaryIO

import psutil

from devservers import raise_nofile_limit

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
BIN = str(Path(sys.executable).parent)


def _child_setup() -> None:  # runs in the forked server before exec
    raise_nofile_limit()


class Server:
    """A server subprocess in its own process group, with its log in a file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: BinaryIO | None = None

    def start(self) -> None:
        """Start the process in its own session (process group), output to the log file."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._log = log
        self.proc = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_child_setup,
            start_new_session=True,
        )

    def alive(self) -> bool:
        """Whether the process is running."""
        return self.proc is not None and self.proc.poll() is None

    def _procs(self) -> list[psutil.Process]:
        if not self.alive():
            return []
        assert self.proc is not None
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def rss(self) -> int:
        """Resident memory of the process and its children, bytes."""
        total = 0
        for p in self._procs():
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        return total

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of the process and its children."""
        total = 0.0
        for p in self._procs():
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system
        return total

    def tail(self, lines: int = 15) -> str:
        """The last ``lines`` of the log."""
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM the process group, SIGKILL it after ``timeout`` s; close the log."""
        if self.proc is not None and self.proc.poll() is None:
            pgid = self.proc.pid  # start_new_session: the group we created has our pid
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL)
                self.proc.wait(timeout)
        if self._log is not None:
            self._log.close()
            self._log = None


class ServerGroup:
    """Several processes of one system (``System.processes``), measured as one server.

    ``alive`` only while every process is; ``rss`` and ``cpu_seconds`` are sums.
    """

    def __init__(self, servers: list[Server]) -> None:
        self.servers = servers

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        """The first process (the one the publisher connects to)."""
        return self.servers[0].proc

    @property
    def pids(self) -> list[int]:
        """Pids of the started processes."""
        return [s.proc.pid for s in self.servers if s.proc is not None]

    def start(self) -> None:
        """Start every process."""
        for server in self.servers:
            server.start()

    def alive(self) -> bool:
        """Whether every process is running."""
        return all(s.alive() for s in self.servers)

    def rss(self) -> int:
        """Sum of the processes' RSS, bytes."""
        return sum(s.rss() for s in self.servers)

    def cpu_seconds(self) -> float:
        """Sum of the processes' CPU seconds."""
        return sum(s.cpu_seconds() for s in self.servers)

    def tail(self, lines: int = 15) -> str:
        """The log tails, one per process when there are several."""
        if len(self.servers) == 1:
            return self.servers[0].tail(lines)
        return "\n".join(f"--- {s.log_path.name}:\n{s.tail(lines)}" for s in self.servers)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM every process group, then wait for (or kill) each."""
        for server in self.servers:  # SIGTERM them all first, so they shut down together
            if server.proc is not None and server.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(server.proc.pid, signal.SIGTERM)
        for server in self.servers:
            server.stop(timeout)


def run_setup(commands: list[str], env: dict[str, str], log_path: Path) -> None:
    """Run each setup command in order (output to ``log_path``); raise if one fails."""
    with open(log_path, "ab") as log:
        for cmd in commands:
            log.write(f"$ {cmd}\n".encode())
            log.flush()
            done = subprocess.run(
                shlex.split(cmd),
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=300,
                check=False,
            )
            if done.returncode != 0:
                raise RuntimeError(f"setup command failed ({done.returncode}): {cmd}")
