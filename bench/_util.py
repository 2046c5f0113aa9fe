"""Small helpers shared by the load generator, the peers and the runner."""

from __future__ import annotations

import contextlib
import resource
import socket
import time
from collections.abc import Callable

NOFILE_TARGET = 65536


def raise_nofile_limit(target: int = NOFILE_TARGET) -> int:
    """Raise RLIMIT_NOFILE of this process as far as allowed, up to ``target``.

    Root may raise the hard limit too; others only the soft limit up to the hard one.
    Returns the soft limit in force afterwards.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= target:
        return soft
    try:
        new_hard = hard if hard == resource.RLIM_INFINITY else max(hard, target)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, new_hard))
    except (ValueError, OSError):
        capped = target if hard == resource.RLIM_INFINITY else min(target, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (capped, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (race-prone, good enough for a bench)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_port(
    port: int,
    host: str = "127.0.0.1",
    timeout: float = 30.0,
    alive: Callable[[], bool] | None = None,
) -> bool:
    """Poll until ``host:port`` accepts TCP connections.

    ``alive`` is an optional callable; when it returns False (the server process died) the
    wait stops early and False is returned.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            return False
        if port_open(port, host):
            return True
        time.sleep(0.1)
    return False
