"""``deploy/nginx.conf`` in front of two daphne processes: TLS, WebSocket upgrade, no sticky sessions."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.typing import Origin

from tests.support.cluster import Control, Member, cluster_env, migrate, start_cluster
from tests.support.nginx import Nginx

pytestmark = pytest.mark.timeout(120)


async def test_the_sample_nginx_config_spreads_sockets_over_processes(
    redis_url: str, postgres_url: str, daphne_factory: typing.Any, tmp_path: Path
) -> None:
    env = {**cluster_env(redis_url, postgres_url), "BEHIND_TLS_PROXY": "1"}
    migrate(env)
    daphnes = start_cluster(daphne_factory, env, 2)
    proxy = Nginx(tmp_path, daphnes).start()
    try:
        port, tls, origin = proxy.port, proxy.tls, proxy.url

        async def member(name: str) -> Member:
            ws = await connect(
                f"wss://127.0.0.1:{port}/mp/member/lobby", ssl=tls, origin=Origin(origin), open_timeout=10
            )
            joined = Member(ws, name)
            await joined.wait(lambda frames: len(frames) >= 1, "its channel id")
            return joined

        members = [await member(f"m{i}") for i in range(4)]
        processes = {m.frames[0]["process"] for m in members}
        assert len(processes) == 2, "least_conn should have used both processes"

        control = Control(await connect(f"wss://127.0.0.1:{port}/mp/control", ssl=tls, origin=Origin(origin)))
        assert await control("group_send", room="lobby", payload={"through": "nginx"}) == "GROUP_SEND"
        for m in members:
            await m.wait(lambda frames: {"through": "nginx"} in frames, "a broadcast through the proxy")

        # One process dies: new connections go to the other (process ids carry the pid).
        killed = f"-{daphnes[0].pid}-"
        daphnes[0].kill()
        for i in range(2):
            late = await member(f"late{i}")
            assert killed not in late.frames[0]["process"]
    finally:
        proxy.stop()
