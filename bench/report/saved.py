"""Saved history against the peers (issue "Rooms with history at the speed of rooms without").

Ratios of one run, side by side: ours with ``save_history=True`` over ours without, over a
plain Channels consumer that saves a row per message (``plain_channels_saved``), and over
Nexios with ``save_history=True``; the chat-site rates; the stalled database; and a targets
table with a row for each.
"""

from __future__ import annotations

from typing import Any

from bench.report.analysis import delivered_per_s, fmt_num, fmt_ratio, ratio, table

SAVE_VS_UNSAVED = 0.8  # ours saved >= 0.8x ours unsaved
SAVE_VS_PLAIN = 5.0  # ours saved >= 5x plain_channels_saved, rooms and chat site
# database -> (ours saved, plain saved) in the room matrix
DATABASES = {
    "SQLite": ("nexios_compat_saved", "plain_channels_saved"),
    "PostgreSQL": ("nexios_compat_saved_pg", "plain_channels_saved_pg"),
}
OURS_UNSAVED, NEXIOS_SAVED = "nexios_compat", "nexios_daphne_saved"


def _room_rows(systems: dict[str, Any], sizes: list[int]) -> list[dict[str, Any]]:
    rows = []
    for db, (ours, plain) in DATABASES.items():
        if ours not in systems:
            continue
        for size in sizes:
            mine = delivered_per_s(systems[ours], size)

            def over(name: str, size: int = size, mine: float | None = mine) -> float | None:
                return ratio(mine, delivered_per_s(systems[name], size)) if name in systems else None

            rows.append(
                {
                    "database": db,
                    "room": size,
                    "delivered_per_s": mine,
                    "vs_unsaved": over(OURS_UNSAVED),
                    "vs_plain_saved": over(plain),
                    "vs_nexios_saved": over(NEXIOS_SAVED),
                }
            )
    return rows


def _chat_rows(chat: dict[str, Any]) -> list[dict[str, Any]]:
    systems = chat.get("systems", {})
    rows = []
    for db in ("sqlite", "pg"):
        for procs in (1, 2):
            ours = systems.get(f"nexios_compat_saved_{db}_{procs}proc", {}).get("sustained_per_s")
            plain = systems.get(f"plain_channels_saved_{db}_{procs}proc", {}).get("sustained_per_s")
            if ours is None and plain is None:
                continue
            rows.append(
                {
                    "database": db,
                    "processes": procs,
                    "ours": ours,
                    "plain": plain,
                    "ratio": ratio(ours, plain),
                }
            )
    return rows


def _target(what: str, value: float | None, shown: str, aim: str, met: bool | None) -> dict[str, Any]:
    return {"what": what, "value": value, "shown": shown, "target": aim, "met": met}


def _targets(
    rooms: list[dict[str, Any]], chat: list[dict[str, Any]], stall: dict[str, Any]
) -> list[dict[str, Any]]:
    out = []
    for r in rooms:
        where = f"{r['database']}, room {r['room']}"
        for key, aim in (("vs_unsaved", SAVE_VS_UNSAVED), ("vs_plain_saved", SAVE_VS_PLAIN)):
            v = r[key]
            label = (
                "ours saved / ours unsaved" if key == "vs_unsaved" else "ours saved / plain_channels_saved"
            )
            out.append(
                _target(f"{label}, {where}", v, fmt_ratio(v), f">= {aim:g}x", None if v is None else v >= aim)
            )
    for c in chat:
        v = c["ratio"]
        out.append(
            _target(
                f"chat site, {c['database']}, {c['processes']} process(es): ours / plain_channels_saved",
                v,
                f"{fmt_ratio(v)} ({fmt_num(c['ours'])} / {fmt_num(c['plain'])} msg/s)",
                f">= {SAVE_VS_PLAIN:g}x",
                None if v is None else v >= SAVE_VS_PLAIN,
            )
        )
    for name, s in stall.get("systems", {}).items():
        growth = s.get("rss_growth_mib")
        out.append(
            _target(
                f"writer memory under a {stall.get('stall_s', 10):g} s database stall: {name}",
                growth,
                f"+{fmt_num(growth, 1)} MiB (peak {fmt_num(s.get('rss_peak_during_mib'), 1)} MiB)",
                f"<= +{stall.get('limit_mib', 0):g} MiB, all delivered",
                s.get("bounded"),
            )
        )
    return out


def compute_saved(doc: dict[str, Any]) -> dict[str, Any]:
    """The ``saved`` part of the document: room ratios, chat-site rates, targets."""
    rooms = _room_rows(doc.get("systems", {}), list(doc["plan"]["sizes"]))
    chat = _chat_rows(doc.get("chat_site", {}))
    return {"rooms": rooms, "chat": chat, "targets": _targets(rooms, chat, doc.get("stall", {}))}


def _rooms_section(rows: list[dict[str, Any]]) -> list[str]:
    body = [
        [
            r["database"],
            str(r["room"]),
            fmt_num(r["delivered_per_s"]),
            fmt_ratio(r["vs_unsaved"]),
            fmt_ratio(r["vs_plain_saved"]),
            fmt_ratio(r["vs_nexios_saved"]),
        ]
        for r in rows
    ]
    header = [
        "database",
        "room",
        "ours saved, delivered/s",
        "/ ours unsaved",
        "/ plain_channels_saved",
        "/ nexios saved",
    ]
    return [
        "## Saved history, single sender (same run)",
        "",
        "ours saved: nexios_compat with save_history=True (`nexios_compat_saved`, `_pg`); ours unsaved:",
        "`nexios_compat`; plain_channels_saved: a Channels consumer saving a row per message with",
        "`database_sync_to_async(Model.objects.create)` before its group_send (same database);",
        "nexios saved: Nexios with save_history=True under daphne (its history is in process memory).",
        "",
        *table(header, "---:", body),
    ]


def _chat_section(doc: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    plan = doc.get("chat_site", {}).get("plan", {})
    body = [
        [c["database"], str(c["processes"]), fmt_num(c["ours"]), fmt_num(c["plain"]), fmt_ratio(c["ratio"])]
        for c in rows
    ]
    return [
        "## Chat site: highest sustained rate of saved messages/s (p99 <= 100 ms, nothing behind)",
        "",
        f"{plan.get('rooms')} rooms of {plan.get('room_size')} members, every member sending"
        " at a steady rate;"
        f" the offered rate doubles from {fmt_num(plan.get('start_rate'))}/s, then is bisected,"
        f" {plan.get('step_seconds')} s per step, {plan.get('budget_seconds')} s per system.",
        "Two processes share one channels_redis; members of each room are split between them.",
        "",
        *table(["database", "processes", "ours", "plain_channels_saved", "ours / plain"], "---:", body),
    ]


def _stall_section(stall: dict[str, Any]) -> list[str]:
    body = [
        [
            name,
            *(
                fmt_num(s.get(k), 1)
                for k in ("rss_before_mib", "rss_peak_during_mib", "rss_end_of_stall_mib")
            ),
            fmt_num(s.get("rss_after_mib"), 1),
            f"{fmt_num(s.get('delivered'))} / {fmt_num(s.get('expected'))}",
            fmt_num(s.get("delivered_during_stall")),
            fmt_num(s.get("drain_s_after_release"), 1),
        ]
        for name, s in stall.get("systems", {}).items()
    ]
    header = [
        "system",
        "RSS before",
        "peak during",
        "end of stall",
        "after",
        "delivered",
        "delivered in stall",
        "drain s",
    ]
    return [
        "## Stalled database: server RSS (MiB) while the message table is locked"
        f" for {stall.get('stall_s', 0):g} s",
        "",
        f"Senders keep sending {fmt_num(stall.get('rate_per_s'))} saved messages/s"
        " over 20 rooms of 10 throughout.",
        "",
        *table(header, "---:", body),
    ]


def render_saved(doc: dict[str, Any]) -> list[str]:
    """The report's sections on saved history ([] when the run measured none of it)."""
    saved = doc.get("saved") or {}
    lines: list[str] = []
    if saved.get("rooms"):
        lines += _rooms_section(saved["rooms"])
    if saved.get("chat"):
        lines += ["", *_chat_section(doc, saved["chat"])]
    if doc.get("stall", {}).get("systems"):
        lines += ["", *_stall_section(doc["stall"])]
    if saved.get("targets"):
        lines += ["", "## Targets: rooms with history at the speed of rooms without (same run)", ""]
        lines += ["| target | value | aim | met |", "|---|---:|---|---|"]
        for t in saved["targets"]:
            met = "—" if t["met"] is None else ("yes" if t["met"] else "**no**")
            lines.append(f"| {t['what']} | {t['shown']} | {t['target']} | {met} |")
    return lines[1:] if lines and lines[0] == "" else lines
