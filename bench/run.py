"""Run every system of the table side by side and write bench/results/latest.{json,md,png}.

    python -m bench.run --quick          # rooms of 10 and 100, 1000 idle sockets (3-6 min)
    python -m bench.run                  # rooms of 10, 100, 1000; 1k/5k/10k idle sockets
    python -m bench.run --quick --only raw_websockets,plain_channels

For each system: start it on a free port (its own process group, RLIMIT_NOFILE raised), wait
for the port, measure server memory per idle connection on a fresh process, restart it, then
for each room size run the load generator at saturation (rate 0, window 200) and once more at
half of the saturating message rate for latency, then stop it. A system that fails to start
or crashes is recorded with its error and the run goes on.

To add a system, append a ``System`` to ``EXTRA_SYSTEMS`` below (the marked block).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import importlib.metadata
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import psutil

from bench._util import free_port, raise_nofile_limit, wait_port
from bench.loadgen import DEFAULT_WINDOW, Origins, Urls, close_all, open_idle, run_load

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PY = sys.executable
BIN = str(Path(sys.executable).parent)


@dataclass(frozen=True)
class System:
    """One server to benchmark.

    ``cmd``, every ``env`` value and every ``setup`` command are templates with these
    placeholders: ``{python}`` (this interpreter), ``{bin}`` (its bin/ dir, where daphne and
    uvicorn live), ``{port}`` (a free port), ``{redis_url}`` (a redis-server started for this
    run; mentioning it is what makes the run start one), ``{postgres_url}`` (a fresh database
    per system on a PostgreSQL server started for this run; mentioning it is what makes the
    run start one), ``{tmpdir}`` (a fresh directory per system, e.g. for a sqlite file) and
    ``{root}`` (the repository root, also the cwd).
    ``setup`` commands run once, in order, before each start of the server (e.g. migrate).
    ``path`` is the room URL path; ``{room}`` is replaced by the room name.

    ``processes`` > 1 starts ``cmd`` that many times, each on its own ``{port}``, with the
    same environment (so the same ``{redis_url}``, ``{postgres_url}`` and ``{tmpdir}``):
    one room served by several processes. The load generator spreads the members round-robin
    over the processes (member 0, the publisher, on the first) and checks that every member
    got every message in order. Memory per idle connection is then the growth of the *sum*
    of the processes' RSS over all idle sockets, which are spread round-robin too.
    """

    name: str
    cmd: str
    env: dict[str, str] = field(default_factory=dict)
    setup: tuple[str, ...] = ()
    path: str = "/ws/bench/{room}/"
    description: str = ""
    start_timeout: float = 30.0
    # Origin header the clients send ("{port}" is filled in); None sends none. The default
    # is same-origin, like a browser on the server's own page; the peers ignore it.
    origin: str | None = "http://127.0.0.1:{port}"
    processes: int = 1


DAPHNE = "{bin}/daphne -v 0 -b 127.0.0.1 -p {port}"

SYSTEMS: list[System] = [
    System(
        "plain_channels",
        f"{DAPHNE} bench.peers.plain_channels.asgi:application",
        description="Django Channels AsyncJsonWebsocketConsumer, InMemoryChannelLayer, daphne",
    ),
    System(
        "plain_channels_redis",
        f"{DAPHNE} bench.peers.plain_channels.asgi:application",
        env={"REDIS_URL": "{redis_url}"},
        description="Django Channels AsyncJsonWebsocketConsumer, channels_redis, daphne",
    ),
    System(
        "nexios_uvicorn",
        "{bin}/uvicorn --host 127.0.0.1 --port {port} --log-level warning --no-access-log"
        " bench.peers.nexios_peer.app:app",
        description="Nexios 3 Channel/ChannelBox, uvicorn (websockets-sansio)",
    ),
    System(
        "nexios_daphne",
        f"{DAPHNE} bench.peers.nexios_peer.app:app",
        description="Nexios 3 Channel/ChannelBox, daphne",
    ),
    System(
        "raw_websockets",
        "{python} -m bench.peers.raw_websockets --port {port}",
        description="websockets asyncio server + websockets.broadcast (floor of the cost)",
    ),
]

# ================================ ADD SYSTEMS HERE ================================
# Append System(...) entries; they run after the peers above, in this order.
_COMPAT_ENV = {
    "DJANGO_SETTINGS_MODULE": "bench.peers.nexios_compat_peer.settings",
    "DATABASE_URL": "sqlite:///{tmpdir}/bench.sqlite3",
}
_COMPAT_CMD = f"{DAPHNE} bench.peers.nexios_compat_peer.asgi:application"
_COMPAT_SETUP = ("{python} manage.py migrate --noinput",)
EXTRA_SYSTEMS: list[System] = [
    System(
        "nexios_compat",
        _COMPAT_CMD,
        env=_COMPAT_ENV,
        setup=_COMPAT_SETUP,
        description="nexios_compat (per-process hub) on the in-memory layer, daphne",
    ),
    System(
        "nexios_compat_redis",
        _COMPAT_CMD,
        env={**_COMPAT_ENV, "REDIS_URL": "{redis_url}"},
        setup=_COMPAT_SETUP,
        description="nexios_compat (per-process hub) on channels_redis, daphne",
    ),
    System(
        "nexios_compat_saved",
        _COMPAT_CMD,
        env=_COMPAT_ENV,
        setup=_COMPAT_SETUP,
        path="/ws/bench-saved/{room}/",
        description="nexios_compat, save_history=True on SQLite, in-memory layer, daphne",
    ),
    System(
        "nexios_compat_saved_pg",
        _COMPAT_CMD,
        env={**_COMPAT_ENV, "DATABASE_URL": "{postgres_url}"},
        setup=_COMPAT_SETUP,
        path="/ws/bench-saved/{room}/",
        description="nexios_compat, save_history=True on PostgreSQL, in-memory layer, daphne",
    ),
    System(
        "nexios_compat_2proc",
        _COMPAT_CMD,
        env={**_COMPAT_ENV, "DATABASE_URL": "{postgres_url}", "REDIS_URL": "{redis_url}"},
        setup=_COMPAT_SETUP,
        processes=2,
        description="nexios_compat, two daphne processes on one channels_redis and one PostgreSQL;"
        " members split evenly, the publisher on the first",
    ),
]
# ==================================================================================

# Ratios in the report are computed against these, when they ran successfully.
BASELINES = ("plain_channels", "nexios_daphne")

# "Variant ratios" in the report: (label, system, reference, aim or None). delivered/s of
# the system / delivered/s of the reference, per room size, plus memory per idle connection.
VARIANTS: tuple[tuple[str, str, str, float | None], ...] = (
    ("save ratio, SQLite (save_history on / off)", "nexios_compat_saved", "nexios_compat", 0.8),
    ("save ratio, PostgreSQL (save_history on / off)", "nexios_compat_saved_pg", "nexios_compat", 0.8),
    ("Redis layer / in-memory layer", "nexios_compat_redis", "nexios_compat", None),
    ("2 processes / 1 process (both Redis)", "nexios_compat_2proc", "nexios_compat_redis", None),
)

# The targets of issue #5, evaluated for this system on every run.
TARGET_SYSTEM = "nexios_compat_redis"
TARGET_VS_PLAIN = 6.0  # delivered/s >= 6x plain_channels (the faster, in-memory Channels peer)
TARGET_VS_NEXIOS = 0.9  # delivered/s >= 0.9x nexios_daphne
TARGET_P99_MS = 50.0  # p99 < 50 ms at half load...
TARGET_P99_ROOM = 100  # ...in a room of 100
TARGET_SAVE_RATIO = 0.8  # issue #3: save_history on costs at most 20% of delivered/s

# Variables of the calling environment that must not leak into a server.
_SCRUBBED_ENV = ("DJANGO_SETTINGS_MODULE", "REDIS_URL", "DATABASE_URL")


@dataclass(frozen=True)
class Plan:
    mode: str
    sizes: tuple[int, ...]
    sat_seconds: float  # a saturation run sends for this long (or until its cap)...
    sat_deliveries_cap: int  # ...or until members x messages reaches this
    lat_seconds: float  # duration of the half-rate latency run
    idle_levels: tuple[int, ...]

    def sat_messages(self, members: int) -> int:
        return max(500, self.sat_deliveries_cap // members)


QUICK = Plan("quick", (10, 100), 3.0, 400_000, 4.0, (1_000,))
FULL = Plan("full", (10, 100, 1000), 8.0, 1_000_000, 8.0, (1_000, 5_000, 10_000))


def _child_setup() -> None:  # runs in the forked server before exec
    raise_nofile_limit()


def _fmt(template: str, values: dict[str, str]) -> str:
    return template.format(**values)


def _mentions(system: System, placeholder: str) -> bool:
    texts = [system.cmd, *system.env.values(), *system.setup]
    return any(placeholder in t for t in texts)


def _needs_redis(system: System) -> bool:
    return _mentions(system, "{redis_url}")


def _needs_postgres(system: System) -> bool:
    return _mentions(system, "{postgres_url}")


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
        total = 0
        for p in self._procs():
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        return total

    def cpu_seconds(self) -> float:
        total = 0.0
        for p in self._procs():
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system
        return total

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    def stop(self, timeout: float = 5.0) -> None:
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
        return self.servers[0].proc

    @property
    def pids(self) -> list[int]:
        return [s.proc.pid for s in self.servers if s.proc is not None]

    def start(self) -> None:
        for server in self.servers:
            server.start()

    def alive(self) -> bool:
        return all(s.alive() for s in self.servers)

    def rss(self) -> int:
        return sum(s.rss() for s in self.servers)

    def cpu_seconds(self) -> float:
        return sum(s.cpu_seconds() for s in self.servers)

    def tail(self, lines: int = 15) -> str:
        if len(self.servers) == 1:
            return self.servers[0].tail(lines)
        return "\n".join(f"--- {s.log_path.name}:\n{s.tail(lines)}" for s in self.servers)

    def stop(self, timeout: float = 5.0) -> None:
        for server in self.servers:  # SIGTERM them all first, so they shut down together
            if server.proc is not None and server.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(server.proc.pid, signal.SIGTERM)
        for server in self.servers:
            server.stop(timeout)


def run_setup(commands: list[str], env: dict[str, str], log_path: Path) -> None:
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


async def settle(server: Server | ServerGroup, max_wait: float = 10.0, idle_pct: float = 15.0) -> None:
    """Wait until the server uses < ``idle_pct`` % of a core (leftover work from the last run)."""
    deadline = time.monotonic() + max_wait
    await asyncio.sleep(0.2)
    while time.monotonic() < deadline and server.alive():
        c0, t0 = server.cpu_seconds(), time.monotonic()
        await asyncio.sleep(0.25)
        pct = 100 * (server.cpu_seconds() - c0) / (time.monotonic() - t0)
        if pct < idle_pct:
            return


async def measure_memory(
    server: Server | ServerGroup, url: Urls, levels: tuple[int, ...], origin: Origins = None
) -> dict[str, Any]:
    """Server RSS growth per idle socket, at each cumulative level of open sockets."""
    warm, _ = await open_idle(url, 20, origin=origin)
    await close_all(warm)
    await settle(server)
    rss0 = server.rss()
    out: dict[str, Any] = {"rss_before_mb": round(rss0 / 2**20, 1), "levels": []}
    sockets: list[Any] = []
    try:
        for level in levels:
            more, errors = await open_idle(url, level - len(sockets), origin=origin)
            sockets.extend(more)
            await settle(server)
            await asyncio.sleep(0.5)
            rss = server.rss()
            entry: dict[str, Any] = {
                "conns": len(sockets),
                "rss_after_mb": round(rss / 2**20, 1),
                "kib_per_conn": (round((rss - rss0) / len(sockets) / 1024, 2) if sockets else None),
            }
            if errors:
                entry["error"] = f"{len(errors)} of {level} failed; first: {errors[0]}"
                out["levels"].append(entry)
                out["error"] = entry["error"]
                break
            out["levels"].append(entry)
            print(f"    idle {len(sockets):>6}: {entry['kib_per_conn']:8.1f} KiB/conn", flush=True)
    finally:
        for ws in sockets:  # abort, no close handshake: the server is restarted anyway
            with contextlib.suppress(Exception):
                ws.transport.abort()
    return out


def window_for(members: int) -> int:
    """Messages the publisher may be ahead of the slowest member.

    200 messages, but at most ~10k deliveries in flight: with 200 x 1000 queued a slow
    system would need minutes to drain, and latency would only measure the queue.
    """
    return max(5, min(DEFAULT_WINDOW, 10_000 // members))


def _machine_busy_seconds() -> float:
    """CPU seconds all processes of the machine spent (user + nice + system).

    irq/softirq time (loopback TCP is processed there, ~15% of a core at 70k msgs/s) and
    steal are left out: they are not "other users" and would inflate the *other* column.
    """
    t = psutil.cpu_times()
    return t.user + t.nice + t.system


def _machine_irq_seconds() -> float:
    t = psutil.cpu_times()
    return getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0) + getattr(t, "steal", 0.0)


DISTURBED_PCT = 40.0  # other processes using more than this much of a core: measure again
RETRIES_IF_DISTURBED = 2


async def _least_disturbed(
    server: Server | ServerGroup, make_run: Callable[[], Awaitable[dict[str, Any]]], quiet_wait: float
) -> dict[str, Any]:
    """Run ``make_run`` until other processes stay below DISTURBED_PCT (at most 3 times).

    Keeps the attempt during which the rest of the machine used the least CPU.
    """
    attempts: list[dict[str, Any]] = []
    for attempt in range(1 + RETRIES_IF_DISTURBED):
        if attempt:
            await settle(server)
            if quiet_wait > 0:
                await asyncio.to_thread(wait_quiet, quiet_wait)
        result = await make_run()
        if result.get("machine_cpu_pct") is not None:
            # ours: server, client and the services of the run (redis, postgres)
            ours = sum(
                v
                for k, v in result.items()
                if k.endswith("_cpu_pct") and k not in ("machine_cpu_pct", "irq_cpu_pct")
            )
            result["other_cpu_pct"] = round(result["machine_cpu_pct"] - ours, 1)
        attempts.append(result)
        other = result.get("other_cpu_pct")
        if other is None or other <= DISTURBED_PCT or not result.get("delivered"):
            break
        print(f"    (disturbed: other processes used {other:.0f}% of a core; again)", flush=True)
    best = min(attempts, key=lambda r: r.get("other_cpu_pct") or 0.0)
    best["attempts_other_cpu_pct"] = [r.get("other_cpu_pct") for r in attempts]
    return best


async def measure_room(
    server: Server | ServerGroup,
    url_for: Any,
    members: int,
    plan: Plan,
    origin: Origins = None,
    extra_probes: dict[str, Callable[[], float]] | None = None,
    quiet_wait: float = 0.0,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    probes = {
        "server": server.cpu_seconds,
        "machine": _machine_busy_seconds,
        "irq": _machine_irq_seconds,
        **(extra_probes or {}),
    }
    window = window_for(members)
    await settle(server)
    sat = await _least_disturbed(
        server,
        lambda: run_load(
            url_for(f"n{members}-sat-{uuid.uuid4().hex[:8]}"),
            members,
            plan.sat_messages(members),
            rate=0.0,
            window=window,
            duration=plan.sat_seconds,
            max_seconds=plan.sat_seconds * 10,
            cpu_probes=probes,
            origin=origin,
        ),
        quiet_wait,
    )
    out["window"] = window
    out["saturation"] = sat
    out["delivered_per_s"] = sat.get("delivered_per_s")
    out["errors"] = sat.get("errors", 0)
    if not sat.get("sent_per_s"):
        out["error"] = sat.get("error", "saturation run produced no rate")
        return out
    half = max(1.0, 0.5 * float(sat["sent_per_s"]))
    n_lat = max(20, int(half * plan.lat_seconds))
    await settle(server)
    lat = await _least_disturbed(
        server,
        lambda: run_load(
            url_for(f"n{members}-lat-{uuid.uuid4().hex[:8]}"),
            members,
            n_lat,
            rate=half,
            window=window,
            max_seconds=plan.lat_seconds * 4,
            cpu_probes=probes,
            origin=origin,
        ),
        quiet_wait,
    )
    out["latency"] = lat
    out["latency_rate"] = round(half, 1)
    out["p50_ms"] = lat.get("p50_ms")
    out["p99_ms"] = lat.get("p99_ms")
    out["errors"] += lat.get("errors", 0)
    notes = [f"{kind}: {r['error']}" for kind, r in (("sat", sat), ("lat", lat)) if r.get("error")]
    if notes:
        out["error"] = "; ".join(notes)
    return out


class Redis:
    """A throwaway redis-server for the channels_redis variants."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server not found on PATH")
        argv = [
            exe,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--maxclients",
            "20000",
            "--protected-mode",
            "no",
        ]
        self.server = Server("redis", argv, dict(os.environ), log_dir / "redis.log")
        self.server.start()
        if not wait_port(self.port, timeout=15, alive=self.server.alive):
            self.server.stop()
            raise RuntimeError(f"redis-server did not start:\n{self.server.tail()}")
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False)
        self.version = out.stdout.strip()

    def flush(self) -> None:
        import redis

        client = redis.Redis.from_url(self.url)
        try:
            client.flushall()
        finally:
            client.close()

    def stop(self) -> None:
        self.server.stop()


class Postgres:
    """A throwaway PostgreSQL cluster for the ``{postgres_url}`` systems.

    The test suite's ``tests.servers.PostgresServer``: initdb into a temp dir under /tmp,
    trust auth, fsync off, run as the ``postgres`` user when we are root. Each system gets
    a fresh database, dropped when the system is done.
    """

    def __init__(self) -> None:
        from tests.servers import PostgresServer, find_pg_binary

        # bench rooms: 2 processes x (hub + history writer + request threads) fit in 200
        self.server = PostgresServer(default_db="postgres").start()
        exe = find_pg_binary("postgres")
        out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=False)
        self.version = out.stdout.strip()

    @property
    def port(self) -> int:
        return int(self.server.port)

    def create(self, name: str) -> str:
        return str(self.server.create_database(name))

    def drop(self, name: str) -> None:
        with contextlib.suppress(Exception):
            self.server.drop_database(name)

    def cpu_seconds(self) -> float:
        """The postmaster, its live backends, and the backends that already exited."""
        pid = self.server.pid
        if pid is None:
            return 0.0
        total = 0.0
        try:
            root = psutil.Process(pid)
            t = root.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
            for child in root.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    c = child.cpu_times()
                    total += c.user + c.system
        except psutil.Error:
            pass
        return total

    def stop(self) -> None:
        self.server.close()


async def bench_system(
    system: System,
    plan: Plan,
    redis: Redis | None,
    work: Path,
    quiet_wait: float = 0.0,
    postgres: Postgres | None = None,
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "name": system.name,
        "description": system.description,
        "status": "ok",
        "rooms": {},
    }
    if system.processes > 1:
        result["processes"] = system.processes
    uses_redis = _needs_redis(system)
    if uses_redis and redis is None:
        result.update(status="error", error="needs {redis_url} but redis-server is unavailable")
        return result
    uses_postgres = _needs_postgres(system)
    if uses_postgres and postgres is None:
        result.update(status="error", error="needs {postgres_url} but PostgreSQL is unavailable")
        return result
    postgres_db = f"bench_{system.name}_{uuid.uuid4().hex[:8]}" if uses_postgres else ""
    postgres_url = ""
    if postgres is not None and postgres_db:
        try:
            postgres_url = postgres.create(postgres_db)
        except Exception as exc:
            result.update(status="error", error=f"could not create database: {exc}")
            return result
    tmpdir = Path(tempfile.mkdtemp(prefix=f"{system.name}-", dir=work))
    values = {
        "python": PY,
        "bin": BIN,
        "redis_url": redis.url if redis is not None else "",
        "postgres_url": postgres_url,
        "tmpdir": str(tmpdir),
        "root": str(ROOT),
        "port": "0",
    }
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update({k: _fmt(v, values) for k, v in system.env.items()})
    extra_probes: dict[str, Callable[[], float]] = {}
    if uses_redis and redis is not None:
        extra_probes["redis"] = redis.server.cpu_seconds
    if uses_postgres and postgres is not None:
        extra_probes["postgres"] = postgres.cpu_seconds
    log_path = work / f"{system.name}.log"  # setup output, and the server's if only one
    n_procs = max(1, system.processes)

    def proc_log(i: int) -> Path:
        return log_path if n_procs == 1 else work / f"{system.name}.{i}.log"

    logs = sorted({os.path.relpath(p, ROOT) for p in [log_path, *map(proc_log, range(n_procs))]})
    result["log"] = logs[0] if len(logs) == 1 else logs

    async def start() -> tuple[ServerGroup, list[int]]:
        ports = [free_port() for _ in range(n_procs)]
        vals = {**values, "port": str(ports[0])}
        if system.setup:  # once per start, not per process: the processes share everything
            run_setup([_fmt(c, vals) for c in system.setup], env, log_path)
        servers = []
        for i, port in enumerate(ports):
            argv = shlex.split(_fmt(system.cmd, {**vals, "port": str(port)}))
            if i == 0:
                result["cmd"] = shlex.join(argv)
            servers.append(Server(f"{system.name}.{i}", argv, env, proc_log(i)))
        group = ServerGroup(servers)
        group.start()
        for server, port in zip(servers, ports, strict=True):
            ok = await asyncio.to_thread(wait_port, port, "127.0.0.1", system.start_timeout, server.alive)
            if not ok:
                code = server.proc.poll() if server.proc is not None else None
                group.stop()
                why = (
                    f"exited with code {code} before opening port {port}"
                    if code is not None
                    else f"did not open port {port} within {system.start_timeout:g}s"
                )
                raise RuntimeError(f"{why}; log tail:\n{server.tail()}")
        return group, ports

    def url_maker(ports: list[int]) -> Callable[[str], Urls]:
        def urls(room: str) -> Urls:
            found = [f"ws://127.0.0.1:{port}" + system.path.format(room=room) for port in ports]
            return found[0] if len(found) == 1 else found

        return urls

    def origin_for(ports: list[int]) -> Origins:
        if system.origin is None:
            return None
        found = [system.origin.format(port=port) for port in ports]
        return found[0] if len(found) == 1 else found

    server: ServerGroup | None = None
    try:
        # 1. memory per idle connection, on a fresh process
        server, ports = await start()
        print(
            f"  {system.name}: up on :{', :'.join(map(str, ports))}, pid {', '.join(map(str, server.pids))}",
            flush=True,
        )
        try:
            result["memory"] = await measure_memory(
                server,
                url_maker(ports)(f"idle-{uuid.uuid4().hex[:8]}"),
                plan.idle_levels,
                origin_for(ports),
            )
        except Exception as exc:
            result["memory"] = {"error": f"{type(exc).__name__}: {exc}", "levels": []}
        if result["memory"].get("error"):
            print(f"    idle: ERROR {result['memory']['error'][:200]}", flush=True)
        server.stop()
        # 2. throughput and latency per room size, on another fresh process
        server, ports = await start()
        for members in plan.sizes:
            if not server.alive():
                raise RuntimeError(f"server died; log tail:\n{server.tail()}")
            if quiet_wait > 0:
                await settle(server)  # our own leftovers first, then others' jobs
                await asyncio.to_thread(wait_quiet, quiet_wait)
            room = await measure_room(
                server,
                url_maker(ports),
                members,
                plan,
                origin_for(ports),
                extra_probes,
                quiet_wait,
            )
            result["rooms"][str(members)] = room
            print(
                f"    room {members:>5}: {room.get('delivered_per_s') or 0:>10,.0f} delivered/s"
                f"  p50 {room.get('p50_ms')} ms  p99 {room.get('p99_ms')} ms"
                f"  errors {room.get('errors')}"
                + (f"  [{room['error'][:160]}]" if room.get("error") else ""),
                flush=True,
            )
        if not server.alive():
            raise RuntimeError(f"server died; log tail:\n{server.tail()}")
        if result["memory"].get("error") or any(
            r.get("error") or r.get("errors") for r in result["rooms"].values()
        ):
            result["status"] = "degraded"  # ran, but with delivery/connection errors
    except Exception as exc:
        result.update(status="error", error=f"{type(exc).__name__}: {exc}")
        print(f"  {system.name}: ERROR {result['error']}", flush=True)
    finally:
        if server is not None:
            server.stop()
        if postgres is not None and postgres_db:
            postgres.drop(postgres_db)
    return result


# -- report ----------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    versions = {}
    for dist in (
        "Django",
        "channels",
        "daphne",
        "channels-redis",
        "redis",
        "websockets",
        "nexios",
        "uvicorn",
        "Twisted",
    ):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[dist] = importlib.metadata.version(dist)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu_model,
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "nofile_limit": raise_nofile_limit(),
        "versions": versions,
        "git_commit": commit or None,
        "loadavg_start": round(os.getloadavg()[0], 2),
    }


def _delivered(res: dict[str, Any], size: int) -> float | None:
    room = res.get("rooms", {}).get(str(size))
    return room.get("delivered_per_s") if room else None


def _mem(res: dict[str, Any]) -> float | None:
    levels = res.get("memory", {}).get("levels") or []
    ok = [lv for lv in levels if "error" not in lv]
    return ok[-1]["kib_per_conn"] if ok else None


def compute_ratios(results: dict[str, Any], sizes: tuple[int, ...]) -> dict[str, Any]:
    ratios: dict[str, Any] = {}
    for base in BASELINES:
        b = results.get(base)
        if not b or b.get("status") != "ok":
            continue
        per: dict[str, Any] = {}
        for name, res in results.items():
            entry: dict[str, Any] = {}
            for size in sizes:
                mine, theirs = _delivered(res, size), _delivered(b, size)
                entry[f"delivered_{size}"] = round(mine / theirs, 3) if mine and theirs else None
            mine_m, theirs_m = _mem(res), _mem(b)
            entry["memory_per_conn"] = round(mine_m / theirs_m, 3) if mine_m and theirs_m else None
            per[name] = entry
        ratios[base] = per
    return ratios


def _mem_common(a: dict[str, Any], b: dict[str, Any]) -> tuple[int, float, float] | None:
    """(sockets, KiB/conn of a, KiB/conn of b) at the largest idle level both reached."""

    def ok_levels(res: dict[str, Any]) -> dict[int, float]:
        levels = res.get("memory", {}).get("levels") or []
        return {lv["conns"]: lv["kib_per_conn"] for lv in levels if "error" not in lv}

    la, lb = ok_levels(a), ok_levels(b)
    common = sorted(set(la) & set(lb))
    if not common:
        return None
    k = common[-1]
    return k, la[k], lb[k]


def _ratio(mine: float | None, theirs: float | None) -> float | None:
    return round(mine / theirs, 3) if mine and theirs else None


def compute_variants(results: dict[str, Any], sizes: tuple[int, ...]) -> list[dict[str, Any]]:
    """The VARIANTS ratios, for the pairs where both systems ran."""
    out = []
    for label, name, ref, aim in VARIANTS:
        a, b = results.get(name), results.get(ref)
        if not a or not b:
            continue
        entry: dict[str, Any] = {"label": label, "system": name, "reference": ref, "aim": aim}
        for size in sizes:
            entry[f"delivered_{size}"] = _ratio(_delivered(a, size), _delivered(b, size))
        mem = _mem_common(a, b)
        entry["memory_per_conn"] = _ratio(mem[1], mem[2]) if mem else None
        out.append(entry)
    return out


def compute_targets(results: dict[str, Any], sizes: tuple[int, ...]) -> list[dict[str, Any]]:
    """Issue #5's targets (and issue #3's save ratio) for this run: value, target, met."""
    rows: list[dict[str, Any]] = []
    me = results.get(TARGET_SYSTEM)
    if not me:
        return rows

    def row(what: str, value: float | None, shown: str, target: str, met: bool | None) -> None:
        rows.append({"what": what, "value": value, "shown": shown, "target": target, "met": met})

    for base, aim in (("plain_channels", TARGET_VS_PLAIN), ("nexios_daphne", TARGET_VS_NEXIOS)):
        other = results.get(base)
        if not other:
            continue
        for size in sizes:
            mine, theirs = _delivered(me, size), _delivered(other, size)
            r = _ratio(mine, theirs)
            row(
                f"delivered/s, room {size}: {TARGET_SYSTEM} / {base}",
                r,
                f"{_x(r)} ({_n(mine)} / {_n(theirs)})",
                f">= {aim:g}x",
                None if r is None else r >= aim,
            )
    room = me.get("rooms", {}).get(str(TARGET_P99_ROOM))
    if room is not None:
        p99 = room.get("p99_ms")
        row(
            f"p99 at half load, room {TARGET_P99_ROOM}: {TARGET_SYSTEM}",
            p99,
            f"{_n(p99, 1)} ms @ {_n(room.get('latency_rate'))} msg/s",
            f"< {TARGET_P99_MS:g} ms",
            None if p99 is None else p99 < TARGET_P99_MS,
        )
    plain = results.get("plain_channels")
    mem = _mem_common(me, plain) if plain else None
    if plain:
        row(
            f"memory per idle connection: {TARGET_SYSTEM} / plain_channels"
            + (f" at {mem[0]:,} sockets" if mem else ""),
            _ratio(mem[1], mem[2]) if mem else None,
            f"{_x(_ratio(mem[1], mem[2]))} ({mem[1]:.1f} / {mem[2]:.1f} KiB)" if mem else "—",
            "<= 1.00x",
            None if mem is None else mem[1] <= mem[2],
        )
    for saved in ("nexios_compat_saved", "nexios_compat_saved_pg"):
        a, b = results.get(saved), results.get("nexios_compat")
        if not a or not b:
            continue
        for size in sizes:
            r = _ratio(_delivered(a, size), _delivered(b, size))
            row(
                f"save ratio (issue #3), room {size}: {saved} / nexios_compat",
                r,
                _x(r),
                f">= {TARGET_SAVE_RATIO:g}x",
                None if r is None else r >= TARGET_SAVE_RATIO,
            )
    return rows


def _n(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def _x(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}x"


def render_markdown(doc: dict[str, Any]) -> str:
    meta, plan, results, ratios = doc["meta"], doc["plan"], doc["systems"], doc["ratios"]
    sizes = plan["sizes"]
    lines = [
        f"# Room broadcast benchmark ({plan['mode']} run)",
        "",
        f"- date: {meta['date']}  commit: {meta.get('git_commit') or '—'}",
        f"- machine: {meta['cpus']} x {meta['cpu_model']}, {meta['memory_gib']} GiB, "
        f"{meta['platform']}, Python {meta['python']}",
        "- versions: "
        + ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
        + (f", {meta['redis_server']}" if meta.get("redis_server") else "")
        + (f", {meta['postgres_server']}" if meta.get("postgres_server") else ""),
        "- load: one asyncio client process; saturation = rate 0 for "
        f"{plan['sat_seconds']:g} s with at most "
        + ", ".join(f"{w} (room {n})" for n, w in plan["windows"].items())
        + " messages ahead of the slowest member; latency = rate at half of each system's"
        f" own saturating message rate for {plan['lat_seconds']:g} s. Server and client share"
        f" {meta['cpus']} cores.",
        f"- machine load average (1 min) at start / end: {meta.get('loadavg_start', '—')} / "
        f"{meta.get('loadavg_end', '—')}; total run time {plan['total_seconds']} s",
        "",
        "## Delivered messages/s at saturation (members x messages / elapsed; higher is better)",
        "",
        "| system | " + " | ".join(f"room {s}" for s in sizes) + " |",
        "|---|" + "---:|" * len(sizes),
    ]
    for name, res in results.items():
        cells = [_n(_delivered(res, s)) for s in sizes]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Latency at half of the saturating rate: p50 / p99 ms (receive time - send ts)",
        "",
        "| system | " + " | ".join(f"room {s}" for s in sizes) + " |",
        "|---|" + "---:|" * len(sizes),
    ]
    for name, res in results.items():
        cells = []
        for s in sizes:
            room = res.get("rooms", {}).get(str(s))
            cells.append(
                f"{_n(room.get('p50_ms'), 1)} / {_n(room.get('p99_ms'), 1)}"
                f" @ {_n(room.get('latency_rate'))} msg/s"
                if room and room.get("p50_ms") is not None
                else "—"
            )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    levels = plan["idle_levels"]
    lines += [
        "",
        "## Server memory per idle connection, KiB ((RSS after - RSS before) / sockets)",
        "",
        "| system | RSS before MiB | " + " | ".join(f"{k:,} idle" for k in levels) + " |",
        "|---|---:|" + "---:|" * len(levels),
    ]
    for name, res in results.items():
        mem = res.get("memory", {})
        by = {lv["conns"]: lv for lv in mem.get("levels", [])}
        cells = [
            _n(by[k]["kib_per_conn"], 1) + (" (err)" if "error" in by[k] else "") if k in by else "—"
            for k in levels
        ]
        lines.append(f"| {name} | {_n(mem.get('rss_before_mb'), 1)} | " + " | ".join(cells) + " |")
    for base, per in ratios.items():
        lines += [
            "",
            f"## Ratios to {base} (same run)",
            "",
            "| system | " + " | ".join(f"delivered/s room {s}" for s in sizes) + " | memory/conn |",
            "|---|" + "---:|" * (len(sizes) + 1),
        ]
        for name, entry in per.items():
            cells = [_x(entry.get(f"delivered_{s}")) for s in sizes]
            cells.append(_x(entry.get("memory_per_conn")))
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    variants = doc.get("variants") or []
    if variants:
        lines += [
            "",
            "## Variant ratios (same run): what history, Redis and a second process cost",
            "",
            "delivered/s of the system / delivered/s of the reference; memory per idle connection",
            "likewise (at the largest level both reached). The save ratios aim at >= 0.8 (issue #3).",
            "",
            "| ratio | system / reference | "
            + " | ".join(f"delivered/s room {s}" for s in sizes)
            + " | memory/conn |",
            "|---|---|" + "---:|" * (len(sizes) + 1),
        ]
        for v in variants:
            cells = [_x(v.get(f"delivered_{s}")) for s in sizes] + [_x(v.get("memory_per_conn"))]
            lines.append(f"| {v['label']} | {v['system']} / {v['reference']} | " + " | ".join(cells) + " |")
    targets = doc.get("targets") or []
    if targets:
        lines += [
            "",
            f"## Targets ({TARGET_SYSTEM}: nexios_compat on the Redis layer under daphne; same run)",
            "",
            "| target | value | aim | met |",
            "|---|---:|---|---|",
        ]
        for t in targets:
            met = "—" if t["met"] is None else ("yes" if t["met"] else "**no**")
            lines.append(f"| {t['what']} | {t['shown']} | {t['target']} | {met} |")
    lines += [
        "",
        "## CPU during the saturation runs, % of one core: server / client / other",
        "",
        "Client >= 90 means client-bound. *other* is every other process of the machine",
        "(other users' jobs; redis-server and PostgreSQL are not counted in it). A run during",
        f"which *other* exceeded {DISTURBED_PCT:g} % of a core was repeated"
        f" (up to {RETRIES_IF_DISTURBED} times)",
        "and the least disturbed attempt kept: a large value means every attempt was disturbed.",
        "",
        "| system | " + " | ".join(f"room {s}" for s in sizes) + " |",
        "|---|" + "---:|" * len(sizes),
    ]
    for name, res in results.items():
        cells = []
        for s in sizes:
            sat = res.get("rooms", {}).get(str(s), {}).get("saturation") or {}
            cells.append(
                f"{_n(sat.get('server_cpu_pct'))} / {_n(sat.get('client_cpu_pct'))}"
                f" / {_n(max(0.0, sat['other_cpu_pct']) if 'other_cpu_pct' in sat else None)}"
            )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    problems = []
    for name, res in results.items():
        if res.get("error"):
            problems.append(f"- **{name}**: {res['error'].splitlines()[0]}")
        for s, room in res.get("rooms", {}).items():
            if room.get("errors") or room.get("error"):
                problems.append(
                    f"- {name} room {s}: {room.get('errors')} delivery errors; "
                    f"{room.get('error', '')}".rstrip("; ")
                )
        if res.get("memory", {}).get("error"):
            problems.append(f"- {name} memory: {res['memory']['error']}")
    lines += ["", "## Errors", ""] + (problems or ["none"])
    lines += ["", "## Systems", ""]
    for name, res in results.items():
        procs = f" (x{res['processes']} processes, one port each)" if res.get("processes") else ""
        lines.append(f"- **{name}**: {res.get('description', '')} — `{res.get('cmd', '')}`{procs}")
    return "\n".join(lines) + "\n"


def plot(doc: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = doc["plan"]["sizes"]
    fig, ax = plt.subplots(figsize=(8, 5))
    plotted = 0
    for name, res in doc["systems"].items():
        xs = [s for s in sizes if _delivered(res, s)]
        ys = [float(_delivered(res, s) or 0) for s in xs]
        if xs:
            ax.plot(xs, ys, marker="o", label=name)
            plotted += 1
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(sizes)
    ax.set_xticklabels([str(s) for s in sizes])
    ax.set_xlabel("room size (members)")
    ax.set_ylabel("delivered messages/s (saturation)")
    meta = doc["meta"]
    ax.set_title(f"Room broadcast, {doc['plan']['mode']} run, {meta['date'][:10]}, {meta['cpus']} CPUs")
    ax.grid(True, which="both", alpha=0.3)
    if plotted:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def wait_quiet(max_wait: float, busy_pct: float = 25.0) -> float:
    """Wait until the machine's CPUs are on average < busy_pct % busy (others' jobs).

    Returns the seconds waited.
    """
    t0 = time.monotonic()
    said = False
    while time.monotonic() - t0 < max_wait:
        pct = psutil.cpu_percent(interval=1.0)
        if pct < busy_pct:
            if said:
                print(f"    machine quiet again after {time.monotonic() - t0:.0f} s", flush=True)
            return time.monotonic() - t0
        if not said:
            print(f"    machine {pct:.0f}% busy (others' jobs?), waiting...", flush=True)
            said = True
    print("    machine still busy; running anyway (see the 'other' CPU column)", flush=True)
    return time.monotonic() - t0


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    plan = QUICK if args.quick else FULL
    if args.sizes:
        plan = dataclasses.replace(plan, sizes=tuple(int(s) for s in args.sizes.split(",")))
    systems = SYSTEMS + EXTRA_SYSTEMS
    if args.only:
        wanted = args.only.split(",")
        unknown = set(wanted) - {s.name for s in systems}
        if unknown:
            raise SystemExit(f"unknown systems: {', '.join(sorted(unknown))}")
        systems = [s for s in systems if s.name in wanted]
    raise_nofile_limit()
    out_dir = Path(args.out).resolve()
    work = out_dir / "tmp"
    work.mkdir(parents=True, exist_ok=True)
    meta = machine_info()
    redis: Redis | None = None
    postgres: Postgres | None = None
    if any(_needs_redis(s) for s in systems):
        try:
            redis = Redis(work)
            meta["redis_server"] = redis.version.split(" sha=")[0]
            print(f"redis-server on {redis.url}", flush=True)
        except Exception as exc:
            print(f"redis unavailable: {exc}", flush=True)
    if any(_needs_postgres(s) for s in systems):
        try:
            postgres = await asyncio.to_thread(Postgres)
            meta["postgres_server"] = postgres.version
            print(f"PostgreSQL on port {postgres.port}", flush=True)
        except Exception as exc:
            print(f"PostgreSQL unavailable: {str(exc)[:500]}", flush=True)
    results: dict[str, Any] = {}
    t0 = time.monotonic()
    try:
        for system in systems:
            if args.wait_quiet > 0:  # before each system: others' jobs come and go
                await asyncio.to_thread(wait_quiet, args.wait_quiet)
            print(f"== {system.name}", flush=True)
            if redis is not None and _needs_redis(system):
                redis.flush()
            results[system.name] = await bench_system(system, plan, redis, work, args.wait_quiet, postgres)
    finally:
        if redis is not None:
            redis.stop()
        if postgres is not None:
            postgres.stop()
    meta["loadavg_end"] = round(os.getloadavg()[0], 2)
    doc: dict[str, Any] = {
        "meta": meta,
        "plan": {
            **plan.__dict__,
            "windows": {str(n): window_for(n) for n in plan.sizes},
            "total_seconds": round(time.monotonic() - t0),
        },
        "systems": results,
        "ratios": compute_ratios(results, plan.sizes),
        "variants": compute_variants(results, plan.sizes),
        "targets": compute_targets(results, plan.sizes),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "latest.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out_dir / "latest.md").write_text(render_markdown(doc))
    plot(doc, out_dir / "throughput.png")
    print(
        f"wrote {out_dir}/latest.json, latest.md, throughput.png ({doc['plan']['total_seconds']} s)",
        flush=True,
    )
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="rooms 10/100, 1000 idle sockets")
    parser.add_argument("--only", help="comma-separated system names to run")
    parser.add_argument("--sizes", help="comma-separated room sizes (overrides the plan)")
    parser.add_argument("--out", default=str(RESULTS), help="output directory")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="S",
        help="before each system and room size, wait up to S s for the machine to be < 25%% busy",
    )
    args = parser.parse_args(argv)
    doc = asyncio.run(main_async(args))
    failed = [n for n, r in doc["systems"].items() if r.get("status") != "ok"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
