"""The markdown report and the throughput plot of a run (``latest.md``, ``throughput.png``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.harness.measurement import DISTURBED_PCT, RETRIES_IF_DISTURBED
from bench.report.analysis import TARGET_SYSTEM, delivered_per_s, fmt_num, fmt_ratio, table
from bench.report.saved import render_saved

Doc = dict[str, Any]


def _header(doc: Doc) -> list[str]:
    meta, plan = doc["meta"], doc["plan"]
    return [
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
    ]


def _rooms_header(sizes: list[int], prefix: str = "room") -> list[str]:
    return ["system", *(f"{prefix} {s}" for s in sizes)]


def _delivered(doc: Doc, sizes: list[int]) -> list[str]:
    rows = [
        [name, *(fmt_num(delivered_per_s(res, s)) for s in sizes)] for name, res in doc["systems"].items()
    ]
    return [
        "## Delivered messages/s at saturation (members x messages / elapsed; higher is better)",
        "",
        *table(_rooms_header(sizes), "---:", rows),
    ]


def _latency_cell(room: dict[str, Any] | None) -> str:
    if not room or room.get("p50_ms") is None:
        return "—"
    return (
        f"{fmt_num(room.get('p50_ms'), 1)} / {fmt_num(room.get('p99_ms'), 1)}"
        f" @ {fmt_num(room.get('latency_rate'))} msg/s"
    )


def _latency(doc: Doc, sizes: list[int]) -> list[str]:
    rows = [
        [name, *(_latency_cell(res.get("rooms", {}).get(str(s))) for s in sizes)]
        for name, res in doc["systems"].items()
    ]
    return [
        "## Latency at half of the saturating rate: p50 / p99 ms (receive time - send ts)",
        "",
        *table(_rooms_header(sizes), "---:", rows),
    ]


def _memory(doc: Doc) -> list[str]:
    levels = doc["plan"]["idle_levels"]
    rows = []
    for name, res in doc["systems"].items():
        mem = res.get("memory", {})
        by = {lv["conns"]: lv for lv in mem.get("levels", [])}
        cells = [
            fmt_num(by[k]["kib_per_conn"], 1) + (" (err)" if "error" in by[k] else "") if k in by else "—"
            for k in levels
        ]
        rows.append([name, fmt_num(mem.get("rss_before_mb"), 1), *cells])
    return [
        "## Server memory per idle connection, KiB ((RSS after - RSS before) / sockets)",
        "",
        *table(["system", "RSS before MiB", *(f"{k:,} idle" for k in levels)], "---:", rows),
    ]


def _ratios(doc: Doc, sizes: list[int]) -> list[str]:
    lines: list[str] = []
    header = [*_rooms_header(sizes, "delivered/s room"), "memory/conn"]
    for base, per in doc["ratios"].items():
        rows = [
            [
                name,
                *(fmt_ratio(entry.get(f"delivered_{s}")) for s in sizes),
                fmt_ratio(entry.get("memory_per_conn")),
            ]
            for name, entry in per.items()
        ]
        lines += ["", f"## Ratios to {base} (same run)", "", *table(header, "---:", rows)]
    return lines[1:]


def _variants(doc: Doc, sizes: list[int]) -> list[str]:
    variants = doc.get("variants") or []
    if not variants:
        return []
    rows = [
        [
            v["label"],
            f"{v['system']} / {v['reference']}",
            *(fmt_ratio(v.get(f"delivered_{s}")) for s in sizes),
            fmt_ratio(v.get("memory_per_conn")),
        ]
        for v in variants
    ]
    header = ["ratio", "system / reference", *(f"delivered/s room {s}" for s in sizes), "memory/conn"]
    lines = table(header, "---:", rows)
    lines[1] = "|---|---|" + "---:|" * (len(sizes) + 1)
    return [
        "## Variant ratios (same run): what history, Redis and a second process cost",
        "",
        "delivered/s of the system / delivered/s of the reference; memory per idle connection",
        "likewise (at the largest level both reached). The save ratios aim at >= 0.8 (issue #3).",
        "",
        *lines,
    ]


def _targets(doc: Doc) -> list[str]:
    targets = doc.get("targets") or []
    if not targets:
        return []
    lines = [
        f"## Targets ({TARGET_SYSTEM}: nexios_compat on the Redis layer under daphne; same run)",
        "",
        "| target | value | aim | met |",
        "|---|---:|---|---|",
    ]
    for t in targets:
        met = "—" if t["met"] is None else ("yes" if t["met"] else "**no**")
        lines.append(f"| {t['what']} | {t['shown']} | {t['target']} | {met} |")
    return lines


def _cpu_cell(sat: dict[str, Any]) -> str:
    other = max(0.0, sat["other_cpu_pct"]) if "other_cpu_pct" in sat else None
    return f"{fmt_num(sat.get('server_cpu_pct'))} / {fmt_num(sat.get('client_cpu_pct'))} / {fmt_num(other)}"


def _cpu(doc: Doc, sizes: list[int]) -> list[str]:
    rows = [
        [name, *(_cpu_cell(res.get("rooms", {}).get(str(s), {}).get("saturation") or {}) for s in sizes)]
        for name, res in doc["systems"].items()
    ]
    return [
        "## CPU during the saturation runs, % of one core: server / client / other",
        "",
        "Client >= 90 means client-bound. *other* is every other process of the machine",
        "(other users' jobs; redis-server and PostgreSQL are not counted in it). A run during",
        f"which *other* exceeded {DISTURBED_PCT:g} % of a core was repeated"
        f" (up to {RETRIES_IF_DISTURBED} times)",
        "and the least disturbed attempt kept: a large value means every attempt was disturbed.",
        "",
        *table(_rooms_header(sizes), "---:", rows),
    ]


def _errors(doc: Doc) -> list[str]:
    problems = []
    for name, res in doc["systems"].items():
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
    problems += [f"- {p}" for p in doc.get("scenario_errors") or []]
    return ["## Errors", "", *(problems or ["none"])]


def _systems(doc: Doc) -> list[str]:
    lines = ["## Systems", ""]
    for name, res in doc["systems"].items():
        procs = f" (x{res['processes']} processes, one port each)" if res.get("processes") else ""
        lines.append(f"- **{name}**: {res.get('description', '')} — `{res.get('cmd', '')}`{procs}")
    return lines


def render_markdown(doc: Doc) -> str:
    """The whole ``latest.md``: header, then one section per table, blank lines between."""
    sizes = doc["plan"]["sizes"]
    sections = [
        _header(doc),
        _delivered(doc, sizes),
        _latency(doc, sizes),
        _memory(doc),
        _ratios(doc, sizes),
        _variants(doc, sizes),
        _targets(doc),
        render_saved(doc),  # [] when the run measured no saved history: renders as before
        _cpu(doc, sizes),
        _errors(doc),
        _systems(doc),
    ]
    lines: list[str] = []
    for section in sections:
        if section:
            lines += ([""] if lines else []) + section
    return "\n".join(lines) + "\n"


def plot(doc: Doc, path: Path) -> None:
    """Delivered/s by room size, one line per system, log axes, into ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = doc["plan"]["sizes"]
    fig, ax = plt.subplots(figsize=(8, 5))
    plotted = 0
    for name, res in doc["systems"].items():
        xs = [s for s in sizes if delivered_per_s(res, s)]
        ys = [float(delivered_per_s(res, s) or 0) for s in xs]
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
