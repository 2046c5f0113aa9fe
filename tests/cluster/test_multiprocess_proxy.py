"""``deploy/nginx.conf`` in front of two daphne processes: TLS, WebSocket upgrade, no sticky sessions."""

from __future__ import annotations

import ssl
import subprocess
import typing
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.typing import Origin

from devservers import free_port, wait_for_port
from tests.support.cluster import Control, Member, cluster_env, migrate, start_cluster
from tests.support.nginx import main_config, nginx_binary, self_signed, site_config

pytestmark = pytest.mark.timeout(120)


async def test_the_sample_nginx_config_spreads_sockets_over_processes(
    redis_url: str, postgres_url: str, daphne_factory: typing.Any, tmp_path: Path
) -> None:
    nginx = nginx_binary()
    env = {**cluster_env(redis_url, postgres_url), "BEHIND_TLS_PROXY": "1"}
    migrate(env)
    daphnes = start_cluster(daphne_factory, env, 2)
    port = free_port()
    cert, key = self_signed(tmp_path)
    site = tmp_path / "site.conf"
    site.write_text(site_config(daphnes, port, cert, key))
    (tmp_path / "nginx.conf").write_text(main_config(tmp_path, site))
    proxy = subprocess.Popen(
        [nginx, "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-c", str(tmp_path / "nginx.conf"),
         "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_for_port("127.0.0.1", port, 15, proxy, log_path=tmp_path / "error.log")
        tls = ssl.create_default_context(cafile=str(cert))
        tls.check_hostname = False
        origin = f"https://127.0.0.1:{port}"

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
        proxy.terminate()
        proxy.wait(10)
