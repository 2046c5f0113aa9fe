"""``daphne`` serving one of the repository's ASGI apps, and ``manage.py`` commands, from the repo root."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from devservers._process import (
    _POLL_INTERVAL,
    ServerError,
    ServerProcess,
    _exited_error,
    _read_tail,
    wait_for_port,
)
from devservers.ports import free_port

REPO_ROOT = Path(__file__).resolve().parent.parent


class DaphneServer(ServerProcess):
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
