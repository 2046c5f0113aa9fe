"""Operations views: Prometheus metrics (refused unless allowed), liveness and readiness checks."""

from __future__ import annotations

import asyncio
import concurrent.futures
import hmac
import ipaddress
import time
import typing

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from .conf import get_config
from .engine import live_hub

# Seconds the health check waits for ``SELECT 1``.
DATABASE_CHECK_TIMEOUT = 2.0

# The check's own thread: a stalled shared database thread must not hang it, and a
# check still stuck from before answers "stalled" at once instead of queueing another.
_checker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="nexios-health")
_pending: concurrent.futures.Future[None] | None = None


def _in(address: str, networks: typing.Iterable[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(network, strict=False) for network in networks)


def client_address(request: HttpRequest) -> str:
    """Return the client's address: ``REMOTE_ADDR``, or a trusted proxy's ``X-Forwarded-For``."""
    remote = str(request.META.get("REMOTE_ADDR") or "")
    proxies = get_config()["METRICS_TRUSTED_PROXIES"] or ()
    forwarded = str(request.META.get("HTTP_X_FORWARDED_FOR") or "")
    if forwarded and _in(remote, proxies):
        # The last hop is the one our trusted proxy added; anything left of it the client wrote.
        return forwarded.split(",")[-1].strip()
    return remote


def metrics_allowed(request: HttpRequest) -> bool:
    """Say whether this request may read ``/metrics`` (token, address allowlist, or DEBUG)."""
    config = get_config()
    token, allowed = config["METRICS_TOKEN"], config["METRICS_ALLOWED_IPS"]
    if token is None and allowed is None:
        return bool(settings.DEBUG)  # nothing configured: open only while developing
    if token is not None:
        scheme, _, sent = str(request.META.get("HTTP_AUTHORIZATION") or "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(sent.strip().encode(), str(token).encode()):
            return True
    return allowed is not None and _in(client_address(request), allowed)


def metrics_view(request: HttpRequest) -> HttpResponse:
    """Return this process's metrics in Prometheus's text format, to allowed requests only."""
    if not metrics_allowed(request):
        return HttpResponseForbidden("Metrics are not public: see METRICS_TOKEN / METRICS_ALLOWED_IPS.\n")
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


def live_view(request: HttpRequest) -> JsonResponse:
    """Answer 200 while this process serves requests at all (liveness: restart it if not)."""
    return JsonResponse({"status": "ok"})


async def _report() -> tuple[dict[str, typing.Any], bool]:
    """Return the state of each part, and whether this process can serve sockets."""
    hub = live_hub()
    report: dict[str, typing.Any] = {"database": await _database_state()}
    serving = True
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
        if hub.shutdown.stopping:
            report["shutdown"] = "stopping"
        # Sockets need the layer (fan-out between processes) and a process that is not
        # shutting down. The database is not among them: rooms serve through an outage
        # (saved sends fail with 1013 / error frames), and every process sees the same
        # database, so failing on it would eject every backend at once.
        serving = not hub.recovery.recovering and not hub.shutdown.stopping
    report["status"] = "ready" if serving else "unavailable"
    return report, serving


async def ready_view(request: HttpRequest) -> JsonResponse:
    """Report each part's state: 200 while this process can serve sockets, else 503."""
    report, serving = await _report()
    return JsonResponse(report, status=200 if serving else 503)


async def health_view(request: HttpRequest) -> JsonResponse:
    """Answer as ``/health/ready`` (kept for load balancers configured before the split)."""
    return await ready_view(request)
