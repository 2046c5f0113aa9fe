"""/metrics is refused unless allowed; /health/live and /health/ready; a database outage is not unready."""

from __future__ import annotations

import asyncio
import json
import typing
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.test import AsyncClient, Client

from nexios_compat import monitoring
from nexios_compat.engine import live_hub
from tests.support import helpers, site

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("hub_cleanup")]

TOKEN = "s3cret-token"


@pytest.fixture(autouse=True)
def urls(settings: typing.Any) -> None:
    settings.ROOT_URLCONF = "project.urls"


def metrics(client: Client | None = None, **extra: str) -> int:
    return (client or Client()).get("/metrics", **extra).status_code  # type: ignore[arg-type]


def test_metrics_are_refused_by_default_unless_debug(settings: typing.Any) -> None:
    settings.DEBUG = False
    settings.NEXIOS_COMPAT = {}
    assert metrics() == 403
    settings.DEBUG = True
    assert metrics() == 200


def test_metrics_token_is_a_bearer_token(settings: typing.Any) -> None:
    settings.DEBUG = True  # a configured token closes /metrics even under DEBUG
    settings.NEXIOS_COMPAT = {"METRICS_TOKEN": TOKEN}
    assert metrics() == 403
    assert metrics(HTTP_AUTHORIZATION="Bearer wrong") == 403
    assert metrics(HTTP_AUTHORIZATION=f"Basic {TOKEN}") == 403
    assert metrics(HTTP_AUTHORIZATION=f"Bearer {TOKEN}") == 200


def test_metrics_allowlist_goes_by_remote_addr_not_a_spoofed_forwarded_for(settings: typing.Any) -> None:
    settings.NEXIOS_COMPAT = {"METRICS_ALLOWED_IPS": ["10.1.0.0/16", "::1"]}
    assert metrics(REMOTE_ADDR="10.1.2.3") == 200
    assert metrics(REMOTE_ADDR="::1") == 200
    assert metrics(REMOTE_ADDR="192.0.2.9") == 403
    assert metrics(REMOTE_ADDR="192.0.2.9", HTTP_X_FORWARDED_FOR="10.1.2.3") == 403
    settings.NEXIOS_COMPAT = {
        "METRICS_ALLOWED_IPS": ["10.1.0.0/16"],
        "METRICS_TRUSTED_PROXIES": ["127.0.0.1"],
    }
    assert metrics(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="10.1.2.3") == 200
    # Only the hop the trusted proxy added counts; what the client prepended does not.
    assert metrics(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="10.1.2.3, 192.0.2.9") == 403
    assert metrics(REMOTE_ADDR="127.0.0.1") == 403  # the proxy itself is not allowed


async def test_ready_while_the_database_is_down_unready_while_the_layer_recovers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = helpers.room_app()
    member, _ = await helpers.join(app, "/room/ops?username=ann")
    hub = live_hub()
    assert hub is not None

    def down() -> None:
        raise ConnectionError("database down")

    monkeypatch.setattr(monitoring, "_select_one", down)
    client = AsyncClient()
    assert (await client.get("/health/live")).status_code == 200
    for path in ("/health/ready", "/health"):
        response = await client.get(path)
        assert response.status_code == 200, response.content
        assert response.json()["database"] == "down" and response.json()["status"] == "ready"
    monkeypatch.setattr(type(hub.recovery), "recovering", property(lambda self: True))
    response = await client.get("/health/ready")
    assert response.status_code == 503 and response.json()["layer"] == "recovering"
    assert (await client.get("/health/live")).status_code == 200
    await member.disconnect()


def _get(url: str, **headers: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def test_a_real_daphne_refuses_metrics_without_the_token_and_reports_health(
    tmp_path: Path, daphne_factory: typing.Any
) -> None:
    env = site.migrated(tmp_path / "db.sqlite3", "tests.sites.multiprocess.settings")
    env["MP_NEXIOS_COMPAT"] = json.dumps({"METRICS_TOKEN": TOKEN})
    server = daphne_factory(env=env, app="tests.sites.multiprocess.asgi:application")
    status, _ = await asyncio.to_thread(_get, f"{server.url}/metrics")
    assert status == 403
    status, text = await asyncio.to_thread(_get, f"{server.url}/metrics", Authorization=f"Bearer {TOKEN}")
    assert status == 200 and "nexios_compat_connections" in text
    status, _ = await asyncio.to_thread(_get, f"{server.url}/health/live")
    assert status == 200
    status, body = await asyncio.to_thread(_get, f"{server.url}/health/ready")
    assert status == 200 and json.loads(body)["database"] == "ok", body


def test_deploy_check_warns_until_metrics_access_is_configured(settings: typing.Any) -> None:
    from django.core.checks import run_checks

    def w100() -> bool:
        return any(m.id == "nexios_compat.W100" for m in run_checks(include_deployment_checks=True))

    settings.NEXIOS_COMPAT = {}
    assert w100()
    settings.NEXIOS_COMPAT = {"METRICS_TOKEN": TOKEN}
    assert not w100()
    settings.NEXIOS_COMPAT = {"METRICS_ALLOWED_IPS": ["10.0.0.0/8"]}
    assert not w100()
