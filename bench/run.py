"""Run every system of the table side by side and write bench/results/latest.{json,md,png}.

    python -m bench.run --quick          # rooms of 10 and 100, 1000 idle sockets
    python -m bench.run                  # rooms of 10, 100, 1000; 1k/5k/10k idle sockets
    python -m bench.run --quick --only raw_websockets,plain_channels

For each system: start it on a free port (its own process group, RLIMIT_NOFILE raised), wait
for the port, measure server memory per idle connection on a fresh process, restart it, then
for each room size run the load generator at saturation (rate 0, window 200) and once more at
half of the saturating message rate for latency, then stop it. A system that fails to start
or crashes is recorded with its error and the run goes on. Then the chat-site scenario
(``bench.scenarios.chatsite``) and the stalled-database scenario (``bench.scenarios.stall``).

Systems are declared in ``bench/systems.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from bench.harness.launch import Launch, Unavailable
from bench.harness.measurement import measure_memory, measure_room, settle, wait_quiet, window_for
from bench.harness.procs import ROOT, ServerGroup
from bench.harness.services import Services
from bench.report.analysis import compute_ratios, compute_targets, compute_variants, machine_info
from bench.report.render import plot, render_markdown
from bench.report.saved import compute_saved
from bench.scenarios.chatsite import FULL_CHAT, QUICK_CHAT, run_chat_site
from bench.scenarios.stall import run_stall, stall_systems
from bench.systems import EXTRA_SYSTEMS, FULL, QUICK, SYSTEMS, Plan, System, chat_systems
from devservers import raise_nofile_limit

RESULTS = ROOT / "bench" / "results"
# A quick run is a check, not a result to quote: it never overwrites the committed files.
QUICK_RESULTS = RESULTS / "tmp" / "quick"


async def _memory_phase(launch: Launch, plan: Plan) -> dict[str, Any]:
    """Memory per idle connection, on a fresh process that is stopped afterwards."""
    server = await launch.start()
    print(
        f"  {launch.system.name}: up on :{', :'.join(map(str, launch.ports))},"
        f" pid {', '.join(map(str, server.pids))}",
        flush=True,
    )
    try:
        url = launch.urls(f"idle-{uuid.uuid4().hex[:8]}")
        memory = await measure_memory(server, url, plan.idle_levels, launch.origins())
    except Exception as exc:
        memory = {"error": f"{type(exc).__name__}: {exc}", "levels": []}
    finally:
        server.stop()
    if memory.get("error"):
        print(f"    idle: ERROR {memory['error'][:200]}", flush=True)
    return memory


async def _rooms_phase(launch: Launch, server: ServerGroup, plan: Plan, quiet_wait: float) -> dict[str, Any]:
    """Saturation and half-rate latency for every room size of the plan, on one process."""
    rooms: dict[str, Any] = {}
    for members in plan.sizes:
        if not server.alive():
            raise RuntimeError(f"server died; log tail:\n{server.tail()}")
        if quiet_wait > 0:
            await settle(server)  # our own leftovers first, then others' jobs
            await asyncio.to_thread(wait_quiet, quiet_wait)
        room = await measure_room(
            server, launch.urls, members, plan, launch.origins(), launch.probes(), quiet_wait
        )
        rooms[str(members)] = room
        print(
            f"    room {members:>5}: {room.get('delivered_per_s') or 0:>10,.0f} delivered/s"
            f"  p50 {room.get('p50_ms')} ms  p99 {room.get('p99_ms')} ms"
            f"  errors {room.get('errors')}" + (f"  [{room['error'][:160]}]" if room.get("error") else ""),
            flush=True,
        )
    return rooms


async def bench_system(
    system: System, plan: Plan, services: Services, work: Path, quiet_wait: float = 0.0
) -> dict[str, Any]:
    """Measure one system (idle memory, then every room size); never raises."""
    result: dict[str, Any] = {
        "name": system.name,
        "description": system.description,
        "status": "ok",
        "rooms": {},
    }
    if system.processes > 1:
        result["processes"] = system.processes
    try:
        with Launch(system, work, services.redis, services.postgres) as launch:
            result["log"] = launch.logs()
            result["memory"] = (
                await _memory_phase(launch, plan) if system.idle_memory else {"levels": [], "skipped": True}
            )
            server = await launch.start()
            result["cmd"] = launch.cmd
            try:
                result["rooms"] = await _rooms_phase(launch, server, plan, quiet_wait)
                if not server.alive():
                    raise RuntimeError(f"server died; log tail:\n{server.tail()}")
            finally:
                server.stop()
        if result["memory"].get("error") or any(
            r.get("error") or r.get("errors") for r in result["rooms"].values()
        ):
            result["status"] = "degraded"  # ran, but with delivery/connection errors
    except Unavailable as exc:
        result.update(status="error", error=str(exc))
    except Exception as exc:
        result.update(status="error", error=f"{type(exc).__name__}: {exc}")
        print(f"  {system.name}: ERROR {result['error']}", flush=True)
    return result


SCENARIOS = ("rooms", "chat", "stall")


def _select(args: argparse.Namespace) -> tuple[Plan, dict[str, list[System]]]:
    """The plan, and the systems of each scenario that ``--scenarios`` and ``--only`` keep."""
    plan = QUICK if args.quick else FULL
    if args.sizes:
        plan = dataclasses.replace(plan, sizes=tuple(int(s) for s in args.sizes.split(",")))
    wanted_scenarios = args.scenarios.split(",")
    if set(wanted_scenarios) - set(SCENARIOS):
        raise SystemExit(f"unknown scenarios: {args.scenarios} (known: {', '.join(SCENARIOS)})")
    chosen = {"rooms": SYSTEMS + EXTRA_SYSTEMS, "chat": chat_systems(), "stall": stall_systems()}
    if args.only:
        wanted = args.only.split(",")
        unknown = set(wanted) - {s.name for systems in chosen.values() for s in systems}
        if unknown:
            raise SystemExit(f"unknown systems: {', '.join(sorted(unknown))}")
        chosen = {k: [s for s in v if s.name in wanted] for k, v in chosen.items()}
    return plan, {k: (v if k in wanted_scenarios else []) for k, v in chosen.items()}


async def _run_rooms(
    systems: list[System], plan: Plan, services: Services, work: Path, quiet_wait: float
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for system in systems:
        if quiet_wait > 0:  # before each system: others' jobs come and go
            await asyncio.to_thread(wait_quiet, quiet_wait)
        print(f"== {system.name}", flush=True)
        services.flush_redis(system)
        results[system.name] = await bench_system(system, plan, services, work, quiet_wait)
    return results


def write_outputs(doc: dict[str, Any], out_dir: Path) -> None:
    """Write ``latest.json``, ``latest.md`` and ``throughput.png`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "latest.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out_dir / "latest.md").write_text(render_markdown(doc))
    plot(doc, out_dir / "throughput.png")
    print(
        f"wrote {out_dir}/latest.json, latest.md, throughput.png ({doc['plan']['total_seconds']} s)",
        flush=True,
    )


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    """Run the selected systems and scenarios; write and return the document."""
    plan, chosen = _select(args)
    raise_nofile_limit()
    out_dir = Path(args.out or (QUICK_RESULTS if args.quick else RESULTS)).resolve()
    work = RESULTS / "tmp"
    work.mkdir(parents=True, exist_ok=True)
    meta = machine_info()
    t0 = time.monotonic()
    services = await Services.start([s for v in chosen.values() for s in v], work, meta)
    extra: dict[str, Any] = {}
    try:
        results = await _run_rooms(chosen["rooms"], plan, services, work, args.wait_quiet)
        if chosen["chat"]:
            chat_plan = QUICK_CHAT if args.quick else FULL_CHAT
            extra["chat_site"] = await run_chat_site(chosen["chat"], chat_plan, services, work)
        if chosen["stall"]:
            extra["stall"] = await run_stall(chosen["stall"], args.quick, services, work)
    finally:
        services.stop()
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
        **extra,
    }
    doc["saved"] = compute_saved(doc)
    write_outputs(doc, out_dir)
    return doc


def main(argv: list[str] | None = None) -> int:
    """The command line; exits 1 when a system's status is not ``ok``."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="rooms 10/100, 1000 idle sockets")
    parser.add_argument("--only", help="comma-separated system names to run")
    parser.add_argument("--sizes", help="comma-separated room sizes (overrides the plan)")
    parser.add_argument(
        "--out",
        default=None,
        help=f"output directory (default: {os.path.relpath(RESULTS, ROOT)}, or"
        f" {os.path.relpath(QUICK_RESULTS, ROOT)} with --quick)",
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="S",
        help="before each system and room size, wait up to S s for the machine to be < 25%% busy",
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help="comma-separated: rooms (the room matrix), chat (chat site), stall (stalled database)",
    )
    args = parser.parse_args(argv)
    doc = asyncio.run(main_async(args))
    failed = [n for n, r in doc["systems"].items() if r.get("status") != "ok"]
    for part in ("chat_site", "stall"):
        failed += [n for n, r in doc.get(part, {}).get("systems", {}).items() if r.get("status") != "ok"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
