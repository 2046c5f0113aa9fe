"""The connection sweep's table (``scale.md``) and plot (``scale.png``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.report.analysis import fmt_num, table

Doc = dict[str, Any]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def _row(step: dict[str, Any]) -> list[str]:
    b, p = step["broadcast_ms"], step["presence_ms"]
    return [
        f"{step['target']:,}",
        f"{step['held']:,}",
        fmt_num(step["server_rss_mib"]),
        f"{step['server_kib_per_conn']:.1f}",
        f"{step['client_kib_per_conn']:.1f}",
        fmt_num(step["server_cpu_pct"]),
        fmt_num(step["ramp"]["handshakes_per_s"]),
        f"{_ms(b['p50'])} / {_ms(b['p99'])}",
        f"{_ms(p['p50'])} / {_ms(p['p99'])}"
        + (f" ({step['presence_unconverged']} late)" if step["presence_unconverged"] else ""),
        fmt_num(step["churn_per_s"]),
        "/".join(map(str, step["redis_connections"])),
        "/".join(map(str, step["postgres_connections"])),
        step.get("stop_reason") or "-",
    ]


def _connections(doc: Doc) -> list[str]:
    """What each connection to Redis and PostgreSQL of the first daphne last did, at each step."""
    out = ["", "## Service connections of one daphne (last command or query, counted)", ""]
    for step in doc["steps"]:
        first = step["connections"][0]
        out.append(f"- {step['target']:,}: Redis {first['redis']} {first['redis_last']};")
        out.append(f"  PostgreSQL {first['postgres']} {first['postgres_last']}")
        if "server_log" in step:  # runs before 2026-12-02 06:20 did not count them
            out.append(f"  the 4 daphnes' logs during the step: {step['server_log']}")
    return out


def render_scale(doc: Doc) -> str:
    """The markdown page: the plan, the table, the stop reason, the machine."""
    plan, meta = doc["plan"], doc["meta"]
    lines = [
        "# Connection sweep",
        "",
        f"{plan['daphnes']} daphnes on one channels_redis and one PostgreSQL, {plan['clients']} client"
        f" processes; every socket a presence member of its personal room and of one of"
        f" {plan['groups']:,} group rooms. Ramp at up to {plan['ramp_rate']:,.0f} joins/s; each"
        f" step held {plan['hold_seconds']:.0f} s with {plan['sender_fraction']:.0%} of the sockets"
        f" sending {plan['send_rate']:g} message/s each to their group room"
        f" ({'saved in history' if plan['save_history'] else 'not saved'}), {plan['churn']:,.0f}"
        f" sockets/s asked to close and reopen,"
        f" {plan['probes_per_client'] * plan['clients']} presence probes.",
        "",
        f"Machine: {meta.get('cpus')} cores, {meta.get('python', '')}; load average"
        f" {meta.get('loadavg_start', meta.get('loadavg', '?'))} at the start, {meta.get('loadavg_end')} at"
        f" the end; {doc['total_seconds']} s in all.",
        "",
    ]
    header = [
        "step",
        "held",
        "server MiB",
        "KiB/conn server",
        "KiB/conn client",
        "server CPU %",
        "joins/s",
        "broadcast p50 / p99 ms",
        "presence p50 / p99 ms",
        "churn/s",
        "Redis conns",
        "PG conns",
        "stop reason",
    ]
    lines += table(header, "---:", [_row(s) for s in doc["steps"]])
    lines += [
        "",
        f"**Where it stopped:** {doc['stop_reason'] or 'it held every step'}.",
        "",
        "Server CPU is the 4 daphnes together, in % of one core (the machine has "
        f"{meta.get('cpus')}); Redis and PostgreSQL connections are per daphne. *churn/s*"
        " is what was achieved, *late* probes never converged within 30 s; *joins/s* is the ramp's rate"
        " of sockets joined (handshake done and the group room's presence_state received).",
    ]
    lines += _connections(doc)
    return "\n".join(lines) + "\n"


def plot_scale(doc: Doc, path: Path) -> None:
    """Server KiB per connection and broadcast p99 against connections held."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = doc["steps"]
    held = [s["held"] for s in steps]
    fig, ax1 = plt.subplots(figsize=(7, 4))
    ax1.plot(held, [s["server_kib_per_conn"] for s in steps], "o-", color="tab:blue", label="server KiB/conn")
    ax1.set_xlabel("connections held")
    ax1.set_ylabel("server KiB per connection", color="tab:blue")
    ax1.set_ylim(bottom=0)
    ax2 = ax1.twinx()
    ax2.plot(
        held, [s["broadcast_ms"]["p99"] or 0 for s in steps], "s--", color="tab:red", label="broadcast p99"
    )
    ax2.plot(
        held, [s["presence_ms"]["p99"] or 0 for s in steps], "^:", color="tab:green", label="presence p99"
    )
    ax2.set_ylabel("p99 ms", color="tab:red")
    ax2.set_ylim(bottom=0)
    title = "Connection sweep" + (f" (stopped: {doc['stop_reason'][:60]})" if doc["stop_reason"] else "")
    ax1.set_title(title, fontsize=9)
    ax1.set_xlim(left=0, right=max(held, default=1) * 1.1)
    handles = ax1.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax1.legend(handles=handles, loc="center left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
