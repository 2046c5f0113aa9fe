"""The systems of the table and the run plans (quick, full).

To add a system, append a ``System`` to ``EXTRA_SYSTEMS`` below (the marked block).
"""

from __future__ import annotations

from dataclasses import dataclass, field


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
    # False skips the idle-memory phase: a variant that only changes what a message costs
    # (history on, another database) holds idle sockets exactly like its base system.
    idle_memory: bool = True


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
_PLAIN_SAVED_ENV = {
    "DJANGO_SETTINGS_MODULE": "bench.peers.plain_channels_saved.settings",
    "DATABASE_URL": "sqlite:///{tmpdir}/bench.sqlite3",
}
_PLAIN_SAVED_CMD = f"{DAPHNE} bench.peers.plain_channels_saved.asgi:application"
_PLAIN_SAVED_SETUP = ("{python} -m django migrate --noinput",)
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
        idle_memory=False,
    ),
    System(
        "nexios_compat_saved_pg",
        _COMPAT_CMD,
        env={**_COMPAT_ENV, "DATABASE_URL": "{postgres_url}"},
        setup=_COMPAT_SETUP,
        path="/ws/bench-saved/{room}/",
        description="nexios_compat, save_history=True on PostgreSQL, in-memory layer, daphne",
        idle_memory=False,
    ),
    System(
        "plain_channels_saved",
        _PLAIN_SAVED_CMD,
        env=_PLAIN_SAVED_ENV,
        setup=_PLAIN_SAVED_SETUP,
        path="/ws/bench-saved/{room}/",
        description="plain_channels + database_sync_to_async(ChatMessage.objects.create) per message"
        " before its group_send, SQLite, in-memory layer, daphne",
        idle_memory=False,
    ),
    System(
        "plain_channels_saved_pg",
        _PLAIN_SAVED_CMD,
        env={**_PLAIN_SAVED_ENV, "DATABASE_URL": "{postgres_url}"},
        setup=_PLAIN_SAVED_SETUP,
        path="/ws/bench-saved/{room}/",
        description="plain_channels_saved on PostgreSQL",
        idle_memory=False,
    ),
    System(
        "nexios_daphne_saved",
        f"{DAPHNE} bench.peers.nexios_peer.app:app",
        path="/ws/bench-saved/{room}/",
        description="Nexios 3 with save_history=True (its in-process history), daphne",
        idle_memory=False,
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

SAVED_PATH = "/ws/bench-saved/{room}/"


def chat_systems() -> list[System]:
    """The chat-site scenario's systems: ours and plain Channels, saving every message.

    SQLite and PostgreSQL, one daphne process (in-memory layer) and two (one channels_redis):
    eight systems, named ``<base>_<db>_<n>proc``.
    """
    bases = (
        ("nexios_compat_saved", _COMPAT_CMD, _COMPAT_ENV, _COMPAT_SETUP),
        ("plain_channels_saved", _PLAIN_SAVED_CMD, _PLAIN_SAVED_ENV, _PLAIN_SAVED_SETUP),
    )
    dbs = (("sqlite", "sqlite:///{tmpdir}/bench.sqlite3"), ("pg", "{postgres_url}"))
    out = []
    for base, cmd, env, setup in bases:
        for db, url in dbs:
            for procs in (1, 2):
                layer = {"REDIS_URL": "{redis_url}"} if procs > 1 else {}
                out.append(
                    System(
                        f"{base}_{db}_{procs}proc",
                        cmd,
                        env={**env, "DATABASE_URL": url, **layer},
                        setup=setup,
                        path=SAVED_PATH,
                        processes=procs,
                        description=f"{base} on {db}, {procs} daphne process(es)",
                    )
                )
    return out


@dataclass(frozen=True)
class Plan:
    """How long and how big each measurement of a run is (``QUICK`` or ``FULL``)."""

    mode: str
    sizes: tuple[int, ...]
    sat_seconds: float  # a saturation run sends for this long (or until its cap)...
    sat_deliveries_cap: int  # ...or until members x messages reaches this
    lat_seconds: float  # duration of the half-rate latency run
    idle_levels: tuple[int, ...]

    def sat_messages(self, members: int) -> int:
        """Messages a saturation run may send to a room of ``members``."""
        return max(500, self.sat_deliveries_cap // members)


QUICK = Plan("quick", (10, 100), 3.0, 400_000, 4.0, (1_000,))
FULL = Plan("full", (10, 100, 1000), 8.0, 1_000_000, 8.0, (1_000, 5_000, 10_000))


def _mentions(system: System, placeholder: str) -> bool:
    texts = [system.cmd, *system.env.values(), *system.setup]
    return any(placeholder in t for t in texts)


def needs_redis(system: System) -> bool:
    """Whether the system's templates mention ``{redis_url}`` (the run then starts redis)."""
    return _mentions(system, "{redis_url}")


def needs_postgres(system: System) -> bool:
    """Whether the system's templates mention ``{postgres_url}`` (a fresh database for it)."""
    return _mentions(system, "{postgres_url}")
