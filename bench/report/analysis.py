"""Numbers derived from a run's results: machine info, ratios, variant ratios, targets."""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import psutil

from bench.harness.procs import ROOT
from devservers import raise_nofile_limit

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


def machine_info() -> dict[str, Any]:
    """Machine, versions, commit and load average for the report header."""
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


def delivered_per_s(res: dict[str, Any], size: int) -> float | None:
    """Delivered/s at saturation of ``res`` in the room of ``size``, if measured."""
    room = res.get("rooms", {}).get(str(size))
    return room.get("delivered_per_s") if room else None


def _mem(res: dict[str, Any]) -> float | None:
    levels = res.get("memory", {}).get("levels") or []
    ok = [lv for lv in levels if "error" not in lv]
    return ok[-1]["kib_per_conn"] if ok else None


def compute_ratios(results: dict[str, Any], sizes: tuple[int, ...]) -> dict[str, Any]:
    """delivered/s and memory per connection of every system over each of ``BASELINES``."""
    ratios: dict[str, Any] = {}
    for base in BASELINES:
        b = results.get(base)
        if not b or b.get("status") != "ok":
            continue
        per: dict[str, Any] = {}
        for name, res in results.items():
            entry: dict[str, Any] = {}
            for size in sizes:
                mine, theirs = delivered_per_s(res, size), delivered_per_s(b, size)
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


def ratio(mine: float | None, theirs: float | None) -> float | None:
    """``mine / theirs`` to 3 decimals, or None when either is missing or zero."""
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
            entry[f"delivered_{size}"] = ratio(delivered_per_s(a, size), delivered_per_s(b, size))
        mem = _mem_common(a, b)
        entry["memory_per_conn"] = ratio(mem[1], mem[2]) if mem else None
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
            mine, theirs = delivered_per_s(me, size), delivered_per_s(other, size)
            r = ratio(mine, theirs)
            row(
                f"delivered/s, room {size}: {TARGET_SYSTEM} / {base}",
                r,
                f"{fmt_ratio(r)} ({fmt_num(mine)} / {fmt_num(theirs)})",
                f">= {aim:g}x",
                None if r is None else r >= aim,
            )
    room = me.get("rooms", {}).get(str(TARGET_P99_ROOM))
    if room is not None:
        p99 = room.get("p99_ms")
        row(
            f"p99 at half load, room {TARGET_P99_ROOM}: {TARGET_SYSTEM}",
            p99,
            f"{fmt_num(p99, 1)} ms @ {fmt_num(room.get('latency_rate'))} msg/s",
            f"< {TARGET_P99_MS:g} ms",
            None if p99 is None else p99 < TARGET_P99_MS,
        )
    plain = results.get("plain_channels")
    mem = _mem_common(me, plain) if plain else None
    if plain:
        row(
            f"memory per idle connection: {TARGET_SYSTEM} / plain_channels"
            + (f" at {mem[0]:,} sockets" if mem else ""),
            ratio(mem[1], mem[2]) if mem else None,
            f"{fmt_ratio(ratio(mem[1], mem[2]))} ({mem[1]:.1f} / {mem[2]:.1f} KiB)" if mem else "—",
            "<= 1.00x",
            None if mem is None else mem[1] <= mem[2],
        )
    for saved in ("nexios_compat_saved", "nexios_compat_saved_pg"):
        a, b = results.get(saved), results.get("nexios_compat")
        if not a or not b:
            continue
        for size in sizes:
            r = ratio(delivered_per_s(a, size), delivered_per_s(b, size))
            row(
                f"save ratio (issue #3), room {size}: {saved} / nexios_compat",
                r,
                fmt_ratio(r),
                f">= {TARGET_SAVE_RATIO:g}x",
                None if r is None else r >= TARGET_SAVE_RATIO,
            )
    return rows


def fmt_num(value: float | None, digits: int = 0) -> str:
    """``value`` with thousands separators and ``digits`` decimals, or a dash."""
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def fmt_ratio(value: float | None) -> str:
    """``value`` as a ratio (``1.23x``), or a dash."""
    return "—" if value is None else f"{value:.2f}x"


def table(header: list[str], align: str, rows: list[list[str]]) -> list[str]:
    """A markdown table: ``align`` is the separator row's cells after the first, e.g. ``---:``."""
    out = ["| " + " | ".join(header) + " |", "|---|" + "".join(f"{align}|" for _ in header[1:])]
    return out + ["| " + " | ".join(row) + " |" for row in rows]
