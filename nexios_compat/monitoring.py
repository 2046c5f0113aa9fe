"""Operations views: Prometheus metrics, and a health check for load balancers."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
import typing

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from .conf import get_config
from .engine import live_hub

# Seconds the health check waits for ``SELECT 1``.
DATABASE_CHECK_TIMEOUT = 2.0

# The check's own thread: a stalled shared database thread must not hang it, and a
# check still stuck from before answers "stalled" at once instead of queueing another.
_checker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="nexios-health")
_pending: concurrent.futures.Future[None] | None = None


def metrics_view(request: HttpRequest) -> HttpResponse:
    """Return this process's metrics in Prometheus's text format."""
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)


def _select_one() -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:
        connection.close()  # reconnect at the next check
        raise


async def _database_state() -> str:
    global _pending
    if _pending is not None and not _pending.done():
        return "stalled"
    _pending = _checker.submit(_select_one)
    try:
        await asyncio.wait_for(asyncio.wrap_future(_pending), DATABASE_CHECK_TIMEOUT)
    except TimeoutError:
        return "stalled"
    except Exception:
        return "down"
    return "ok"


async def health_view(request: HttpRequest) -> JsonResponse:
    """Report layer, database and heartbeat state: 200 when all are ok, else 503."""
    hub = live_hub()
    report: dict[str, typing.Any] = {"database": await _database_state()}
    if hub is None:
        report.update(layer="idle", heartbeat="idle")  # no socket served yet in this process
    else:
        age = time.monotonic() - hub.cluster.last_beat
        late = age > float(get_config()["PROCESS_TIMEOUT"])
        report.update(
            layer="recovering" if hub.recovery.recovering else "ok",
            heartbeat="late" if late else "ok",
            heartbeat_age=round(age, 3),
            history_writer="failing" if hub.writer.failing else "ok",
            membership="reconciling" if hub.reconciler.dirty else "ok",
            connections=len(hub.shutdown.sockets),
        )
    healthy = report["database"] == "ok" and report["layer"] != "recovering" and report["heartbeat"] != "late"
    return JsonResponse(report, status=200 if healthy else 503)
