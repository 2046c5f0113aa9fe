"""Which process holds which Redis and PostgreSQL connection, and what each last did.

``service_connections(pids, {"redis": port, "postgres": port})`` reads each pid's socket
inodes (``/proc/<pid>/fd``) and the kernel's TCP table (``/proc/net/tcp``) once, so it stays
cheap with tens of thousands of WebSocket sockets open. ``redis_clients`` and
``postgres_clients`` describe the other end (Redis ``CLIENT LIST``, ``pg_stat_activity``) by
the client's port, so each connection can be put to the part of the code that holds it.
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from typing import Any


def _socket_inodes(pid: int) -> set[int]:
    found: set[int] = set()
    fd_dir = f"/proc/{pid}/fd"
    with contextlib.suppress(OSError):
        for fd in os.listdir(fd_dir):
            with contextlib.suppress(OSError):
                target = os.readlink(f"{fd_dir}/{fd}")
                if target.startswith("socket:["):
                    found.add(int(target[8:-1]))
    return found


def _tcp_rows(remote_ports: set[int]) -> list[tuple[int, int, int]]:
    """``(inode, local port, remote port)`` of established IPv4 sockets to ``remote_ports``."""
    rows = []
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            if parts[3] != "01":  # ESTABLISHED
                continue
            rport = int(parts[2].rsplit(":", 1)[1], 16)
            if rport in remote_ports:
                rows.append((int(parts[9]), int(parts[1].rsplit(":", 1)[1], 16), rport))
    return rows


def service_connections(pids: list[int], services: dict[str, int]) -> dict[int, dict[str, list[int]]]:
    """For each pid: ``{service: [client ports]}`` of its established connections to each service."""
    by_port = {port: name for name, port in services.items()}
    rows = _tcp_rows(set(by_port))
    out: dict[int, dict[str, list[int]]] = {}
    for pid in pids:
        inodes = _socket_inodes(pid)
        mine: dict[str, list[int]] = {name: [] for name in services}
        for inode, lport, rport in rows:
            if inode in inodes:
                mine[by_port[rport]].append(lport)
        out[pid] = mine
    return out


def redis_clients(url: str) -> dict[int, str]:
    """Redis ``CLIENT LIST`` by client port: the last command each connection ran."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        return {int(c["addr"].rsplit(":", 1)[1]): str(c.get("cmd", "")) for c in client.client_list()}
    finally:
        client.close()


def postgres_clients(dsn: str) -> dict[int, str]:
    """``pg_stat_activity`` by client port: state and the start of the last query."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT client_port, coalesce(state, ''), left(regexp_replace(query, '\\s+', ' ', 'g'), 48)"
            " FROM pg_stat_activity WHERE client_port IS NOT NULL"
        ).fetchall()
    return {int(port): f"{state}: {query}" for port, state, query in rows}


def describe(
    pids: list[int], services: dict[str, int], redis_url: str | None, postgres_dsn: str | None
) -> dict[str, Any]:
    """Per process: how many connections to each service, and what they last did (counted)."""
    conns = service_connections(pids, services)
    seen = {
        "redis": redis_clients(redis_url) if redis_url else {},
        "postgres": postgres_clients(postgres_dsn) if postgres_dsn else {},
    }
    per_process = []
    for pid in pids:
        entry: dict[str, Any] = {"pid": pid}
        for name, ports in conns[pid].items():
            entry[name] = len(ports)
            entry[f"{name}_last"] = dict(Counter(seen.get(name, {}).get(p, "?") for p in ports).most_common())
        per_process.append(entry)
    return {"per_process": per_process}
