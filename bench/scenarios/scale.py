"""The connection sweep: how cost grows with concurrent connections (``make bench-scale``).

    python -m bench.scenarios.scale            # 10k, 30k, 50k, 100k on 4 daphnes (~25 min at most)
    python -m bench.scenarios.scale --quick    # 1k, 3k: a check, written under bench/results/tmp/

Four daphnes of ``bench.peers.scale_peer`` on one channels_redis and one PostgreSQL; several
client processes (``bench.load.scaleload``) connect to them directly. Every socket is a
presence member of its personal room and of one of ``groups`` group rooms. Per step: ramp up
at ``ramp_rate`` handshakes/s, measure memory and which process holds which Redis and
PostgreSQL connection, then hold for ``hold_seconds`` with 1% of the sockets sending 1
message/s each to their group room (saved in history), ``churn`` sockets/s closed and
reopened, and presence probes. The sweep stops at the first step the machine cannot hold
and records why: that is a result. Writes ``scale.json``, ``scale.md`` and ``scale.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from bench.harness.conncount import describe
from bench.harness.launch import Launch
from bench.harness.procs import ROOT, ServerGroup
from bench.harness.services import Postgres, Redis
from bench.load.scaleclients import ScaleClients
from bench.report.analysis import machine_info
from bench.report.scale import plot_scale, render_scale
from bench.systems import System
from devservers import raise_nofile_limit

RESULTS = ROOT / "bench" / "results"
QUICK_RESULTS = RESULTS / "tmp" / "scale-quick"
MIB = 1 << 20


@dataclass(frozen=True)
class ScalePlan:
    """The sweep's steps and load; the stop thresholds."""

    steps: tuple[int, ...]
    daphnes: int = 4
    clients: int = 4
    groups: int = 1000
    ramp_rate: float = 1000.0  # handshakes/s, all clients together
    hold_seconds: float = 30.0
    sender_fraction: float = 0.01
    send_rate: float = 1.0  # messages/s per sender
    churn: float = 1000.0  # sockets/s closed and as many opened, all clients together
    probes_per_client: int = 5
    save_history: bool = True
    max_p99_ms: float = 5000.0
    max_fail_fraction: float = 0.01
    min_available_mib: int = 2048
    budget_seconds: float = 23 * 60


# Churn is 10/s, not the 1,000/s of the issue: each join and leave is several round trips on
# its process's one ORM thread, which the 4 daphnes saturate at about 60 joins/s in all on this
# machine (the ramp's rate); 40 joins + 40 leaves/s at 5k already put broadcast p99 at 9 s.
# 2k and 5k come before the steps, so the curve has points below where it stops.
FULL = ScalePlan(steps=(2_000, 5_000, 10_000, 30_000, 50_000, 100_000), churn=10.0)
QUICK = ScalePlan(steps=(1000, 3000), groups=100, hold_seconds=10.0, churn=100.0, probes_per_client=3)


def scale_system(daphnes: int, save_history: bool) -> System:
    """The sweep's site: daphnes with a listen backlog of 4096 and a 60 s handshake timeout."""
    return System(
        "scale",
        "{python} -m daphne -v 0 -e tcp:port={port}:interface=127.0.0.1:backlog=4096"
        " --websocket_connect_timeout 60 bench.peers.scale_peer.asgi:application",
        env={
            "DJANGO_SETTINGS_MODULE": "bench.peers.nexios_compat_peer.settings",
            "DATABASE_URL": "{postgres_url}",
            "REDIS_URL": "{redis_url}",
            "SCALE_SAVE_HISTORY": "1" if save_history else "0",
        },
        setup=("{python} manage.py migrate --noinput",),
        processes=daphnes,
        start_timeout=60.0,
        description=f"{daphnes} daphnes of bench.peers.scale_peer on channels_redis and PostgreSQL",
    )


def _pct(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "max": None, "n": 0}
    s = sorted(values)

    def pick(q: float) -> float:
        return round(s[min(len(s) - 1, round(q * (len(s) - 1)))], 1)

    return {"p50": pick(0.5), "p99": pick(0.99), "max": round(s[-1], 1), "n": len(s)}


def _sum(rows: list[dict[str, Any]], key: str) -> Any:
    return sum(r.get(key, 0) for r in rows)


# What a daphne logs when the channel layer fails it, counted per step (the logs are appended to).
LOG_SIGNS = {
    "redis_pool_exhausted": "MaxConnectionsError",
    "probe_recoveries": "Layer probes are not coming back",
    "presence_publish_failed": "Publishing presence of",
    "unsubscribe_failed": "Unsubscribing from",
    "tracebacks": "Traceback (most recent call last)",
}


def _log_sizes(server: ServerGroup) -> list[int]:
    return [s.log_path.stat().st_size if s.log_path.exists() else 0 for s in server.servers]


def _log_signs(server: ServerGroup, since: list[int]) -> dict[str, int]:
    """How often each of ``LOG_SIGNS`` appears in the daphnes' logs after ``since`` (byte offsets)."""
    counts = dict.fromkeys(LOG_SIGNS, 0)
    for s, offset in zip(server.servers, since, strict=True):
        with open(s.log_path, "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
        for key, sign in LOG_SIGNS.items():
            counts[key] += text.count(sign)
    return counts


def _snapshot_profiles(label: str) -> None:
    """Copy each daphne's stack counts so far (``$SCALE_PROFILE``), to tell a ramp from a window."""
    prefix = os.environ.get("SCALE_PROFILE")
    if prefix:
        for path in Path(prefix).parent.glob(f"{Path(prefix).name}.*.json"):
            if path.stem.count(".") == 1:  # <prefix>.<pid>.json, not an earlier copy
                shutil.copy(path, path.with_name(f"{path.stem}.{label}.json"))


def _stop_reason(step: dict[str, Any], plan: ScalePlan, server: ServerGroup) -> str | None:
    """Why the machine could not hold this step, or None."""
    target = step["target"]
    if not server.alive():
        return "a daphne died"
    if step.get("error"):
        return f"client error: {step['error']}"
    if step["held"] < target * (1 - plan.max_fail_fraction):
        ramp = step["ramp"]
        why = "connects refused or timed out" if ramp["failed"] else "ramp too slow for the time budget"
        return f"held {step['held']:,} of {target:,} ({why}: {ramp['fail_reasons']})"
    if step["lost"] > target * plan.max_fail_fraction:
        return f"{step['lost']:,} sockets lost during the hold ({step['lost_reasons']})"
    p99 = step["broadcast_ms"]["p99"]
    if p99 is not None and p99 > plan.max_p99_ms:
        return f"broadcast p99 {p99:,.0f} ms > {plan.max_p99_ms:,.0f} ms"
    if step["available_mib"] < plan.min_available_mib:
        return f"machine memory available {step['available_mib']} MiB < {plan.min_available_mib} MiB"
    return None


async def _step(
    plan: ScalePlan,
    target: int,
    clients: ScaleClients,
    server: ServerGroup,
    base: dict[str, Any],
    ctx: dict[str, Any],
) -> dict[str, Any]:
    n = len(clients.pids)
    share = [target // n + (1 if i < target % n else 0) for i in range(n)]
    logs0 = _log_sizes(server)
    max_ramp = max(30.0, ctx["deadline"] - time.monotonic() - plan.hold_seconds - 45)
    t0 = time.monotonic()
    grown = await clients.call(
        "grow", [{"target": s, "rate": plan.ramp_rate / n, "max_seconds": max_ramp} for s in share]
    )
    ramp_s = time.monotonic() - t0
    await asyncio.sleep(3.0)
    stats = await clients.call("stats")
    held = _sum(stats, "held")
    rss = server.rss()
    _snapshot_profiles(f"ramp-{target}")
    cpu0, wall0 = [s.cpu_seconds() for s in server.servers], time.monotonic()
    side0 = {k: f() for k, f in ctx["probes"].items()}
    held_kw = {
        "seconds": plan.hold_seconds,
        "sender_fraction": plan.sender_fraction,
        "send_rate": plan.send_rate,
        "churn": plan.churn / n,
        "probes": plan.probes_per_client,
    }
    window = await clients.call("hold", held_kw)
    wall = time.monotonic() - wall0
    cpu = [s.cpu_seconds() - c for s, c in zip(server.servers, cpu0, strict=True)]
    after = await clients.call("stats")
    _snapshot_profiles(f"hold-{target}")
    # again after the window: a thread opens its connection on its first use (the writer's on
    # the first saved send, the health check's on the first /health)
    conns = await asyncio.to_thread(describe, server.pids, ctx["ports"], ctx["redis_url"], ctx["pg_dsn"])
    errors = [r["error"] for r in grown + window if "error" in r]
    fail_reasons: dict[str, int] = {}
    for s in stats:
        for k, v in s["fail_reasons"].items():
            fail_reasons[k] = fail_reasons.get(k, 0) + v
    lost_reasons: dict[str, int] = {}
    for s in after:
        for k, v in s["lost_reasons"].items():
            lost_reasons[k] = lost_reasons.get(k, 0) + v
    opened = _sum(grown, "opened")
    per_proc = conns["per_process"]
    step = {
        "target": target,
        "held": held,
        "ramp": {
            "opened": opened,
            "failed": _sum(grown, "failed"),
            "seconds": round(ramp_s, 1),
            "handshakes_per_s": round(opened / ramp_s, 1) if ramp_s > 0 else None,
            "fail_reasons": fail_reasons,
        },
        "server_rss_mib": round(rss / MIB, 1),
        "server_kib_per_conn": round((rss - base["rss"]) / 1024 / max(1, held - base["held"]), 2),
        "client_rss_mib": round(_sum(stats, "rss") / MIB, 1),
        "client_kib_per_conn": round(
            (_sum(stats, "rss") - base["client_rss"]) / 1024 / max(1, held - base["held"]), 2
        ),
        "server_cpu_pct": round(100 * sum(cpu) / wall, 1),
        "server_cpu_pct_per_process": [round(100 * c / wall, 1) for c in cpu],
        "client_cpu_pct": round(100 * _sum(window, "cpu_seconds") / wall, 1),
        "services_cpu_pct": {k: round(100 * (f() - side0[k]) / wall, 1) for k, f in ctx["probes"].items()},
        "window_seconds": round(wall, 1),
        "senders": _sum(window, "senders"),
        "sent": _sum(window, "sent"),
        "sent_per_s": round(_sum(window, "sent") / plan.hold_seconds, 1),
        "echo_missing": _sum(window, "echo_missing"),
        "frames_received": _sum(window, "frames"),
        "broadcast_ms": _pct([x for r in window for x in r.get("latency_ms", [])]),
        "churn_per_s": round(_sum(window, "churn_opened") / plan.hold_seconds, 1),
        "churn_closed": _sum(window, "churn_closed"),
        "churn_opened": _sum(window, "churn_opened"),
        "probes": _sum(window, "probes"),
        "presence_ms": _pct([x for r in window for x in r.get("presence_ms", [])]),
        "presence_unconverged": _sum(window, "unconverged"),
        "lost": _sum(after, "lost") - _sum(stats, "lost"),
        "lost_reasons": lost_reasons,
        "held_after": _sum(after, "held"),
        "redis_connections": [p["redis"] for p in per_proc],
        "postgres_connections": [p["postgres"] for p in per_proc],
        "connections": per_proc,
        "server_log": _log_signs(server, logs0),
        "available_mib": psutil.virtual_memory().available // MIB,
        "loadavg": round(os.getloadavg()[0], 2),
    }
    if errors:
        step["error"] = "; ".join(errors)[:300]
    return step


def _print_step(step: dict[str, Any]) -> None:
    b, p = step["broadcast_ms"], step["presence_ms"]
    print(
        f"  {step['target']:>7,}: held {step['held']:,} ({step['ramp']['handshakes_per_s']}/s),"
        f" server {step['server_rss_mib']} MiB ({step['server_kib_per_conn']} KiB/conn),"
        f" cpu {step['server_cpu_pct']}%, broadcast p50/p99 {b['p50']}/{b['p99']} ms,"
        f" presence p50/p99 {p['p50']}/{p['p99']} ms, churn {step['churn_per_s']}/s,"
        f" redis {step['redis_connections']}, pg {step['postgres_connections']}",
        flush=True,
    )


async def run_scale(plan: ScalePlan, work: Path = RESULTS / "tmp") -> dict[str, Any]:
    """Run the sweep; returns the document (steps, the stop reason, the plan, the machine)."""
    raise_nofile_limit(1 << 18)
    meta = machine_info()
    t_start = time.monotonic()
    redis = Redis(work)
    postgres = await asyncio.to_thread(Postgres)
    steps: list[dict[str, Any]] = []
    stop: str | None = None
    try:
        with Launch(scale_system(plan.daphnes, plan.save_history), work, redis, postgres) as launch:
            server = await launch.start()
            print(f"scale: daphnes on :{', :'.join(map(str, launch.ports))}", flush=True)
            ctx = {
                "ports": {"redis": redis.port, "postgres": postgres.port},
                "redis_url": redis.url,
                "pg_dsn": launch.database_url,
                "probes": launch.probes(),
                "deadline": t_start + plan.budget_seconds,
            }
            clients = ScaleClients([f"ws://127.0.0.1:{p}" for p in launch.ports], plan.clients, plan.groups)
            try:
                warm = plan.clients * 25
                await clients.call(
                    "grow", {"target": warm // plan.clients, "rate": 50.0, "max_seconds": 60.0}
                )
                await asyncio.sleep(3.0)
                stats = await clients.call("stats")
                base = {
                    "rss": server.rss(),
                    "held": _sum(stats, "held"),
                    "held_now": _sum(stats, "held"),
                    "client_rss": _sum(stats, "rss"),
                }
                rate = plan.ramp_rate
                for target in plan.steps:
                    elapsed = time.monotonic() - t_start
                    guess = (target - base["held_now"]) / rate + plan.hold_seconds + 45
                    if elapsed + guess > plan.budget_seconds:
                        stop = (
                            f"time budget: the ramp to {target:,} at the {rate:,.0f} joins/s of the last"
                            f" step would end past {plan.budget_seconds / 60:.0f} min"
                        )
                        break
                    step = await _step(plan, target, clients, server, base, ctx)
                    base["held_now"] = step["held_after"]
                    steps.append(step)
                    rate = min(plan.ramp_rate, step["ramp"]["handshakes_per_s"] or plan.ramp_rate)
                    _print_step(step)
                    stop = _stop_reason(step, plan, server)
                    step["stop_reason"] = stop
                    if stop:
                        print(f"  stopped: {stop}", flush=True)
                        break
            finally:
                await clients.stop()
                server.stop(timeout=20)
    finally:
        redis.stop()
        postgres.stop()
    meta["loadavg_end"] = round(os.getloadavg()[0], 2)
    return {
        "meta": meta,
        "plan": dataclasses.asdict(plan),
        "steps": steps,
        "stop_reason": stop,
        "total_seconds": round(time.monotonic() - t_start),
    }


def write_scale(doc: dict[str, Any], out_dir: Path) -> None:
    """Write ``scale.json``, ``scale.md`` and ``scale.png`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "scale.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out_dir / "scale.md").write_text(render_scale(doc))
    plot_scale(doc, out_dir / "scale.png")
    print(f"wrote {out_dir}/scale.json, scale.md, scale.png ({doc['total_seconds']} s)", flush=True)


def main(argv: list[str] | None = None) -> int:
    """The command line; exits 1 when not even the first step could be measured."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.scenarios.scale",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="1k and 3k connections, short windows")
    parser.add_argument("--steps", help="comma-separated connection counts (overrides the plan)")
    parser.add_argument("--churn", type=float, help="sockets/s closed and reopened during each hold")
    parser.add_argument("--unsaved", action="store_true", help="group sends not saved in history")
    parser.add_argument(
        "--out", help="output directory (default: bench/results, or tmp/scale-quick with --quick)"
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.steps:
        plan = dataclasses.replace(plan, steps=tuple(int(s) for s in args.steps.split(",")))
    if args.churn is not None:
        plan = dataclasses.replace(plan, churn=args.churn)
    if args.unsaved:
        plan = dataclasses.replace(plan, save_history=False)
    work = RESULTS / "tmp"
    work.mkdir(parents=True, exist_ok=True)
    doc = asyncio.run(run_scale(plan, work))
    write_scale(doc, Path(args.out or (QUICK_RESULTS if args.quick else RESULTS)).resolve())
    return 0 if doc["steps"] else 1


if __name__ == "__main__":
    sys.exit(main())
