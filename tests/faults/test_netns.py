"""tests/support/netns.py itself: a cut isolates one pair of hosts, "drop" hangs, "reject" fails at once."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.support import netns
from tests.support.netns import OWNERS, DelayProxy, Topology, ip, remove_leftovers, require_netns

pytestmark = pytest.mark.timeout(60)

# Connects from inside a namespace: prints "ok", or the error's name, after at most 1.5 s.
PROBE = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1.5).close()
    print("ok")
except OSError as exc:
    print(type(exc).__name__)
"""


@pytest.fixture
def net() -> Iterator[Topology]:
    require_netns()
    remove_leftovers()
    with Topology(["a", "b", "c"]) as topology:
        yield topology


def listen(net: Topology, host: str) -> tuple[subprocess.Popen[bytes], int]:
    """A TCP listener in ``host``'s namespace that accepts and holds connections."""
    port = 7000
    code = (
        "import socket, time\n"
        f"s = socket.create_server(({net.addr[host]!r}, {port}))\n"
        "print('up', flush=True)\n"
        "held = []\n"
        "while True: held.append(s.accept())\n"
    )
    proc = subprocess.Popen([*net.exec_argv(host), sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"up\n"
    return proc, port


def probe(net: Topology, source: str, target: str, port: int) -> str:
    argv = [*net.exec_argv(source), sys.executable, "-c", PROBE, net.addr[target], str(port)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=20, check=True).stdout.strip()


def test_a_cut_isolates_one_pair_and_its_mode_decides_hang_or_error(net: Topology) -> None:
    server, port = listen(net, "c")
    try:
        assert probe(net, "a", "c", port) == "ok"
        net.cut("a", "c", mode="drop")
        assert probe(net, "a", "c", port) == "TimeoutError"  # packets vanish: the connect hangs
        assert probe(net, "b", "c", port) == "ok"  # the other host still reaches c
        net.restore("a", "c")
        assert probe(net, "a", "c", port) == "ok"
        net.cut("a", "c", mode="reject")
        assert probe(net, "a", "c", port) == "PermissionError"  # prohibit route: EACCES at once
        net.restore("a", "c")
        assert probe(net, "a", "c", port) == "ok"
    finally:
        server.kill()
        server.wait()


def test_namespaces_are_removed_on_exit_and_orphans_at_the_next_start() -> None:
    require_netns()
    with Topology(["x"]) as topology:
        names = {topology.ns("x"), topology.ns("bridge")}
        assert names <= set(ip("netns", "list").split())
    assert not names & set(ip("netns", "list").split())
    orphan = Topology(["y"]).__enter__()  # as if its pytest had been SIGKILLed
    orphan_owner = OWNERS / orphan.run
    orphan_owner.write_text("999999999")  # no such process
    assert orphan.ns("y") in remove_leftovers()
    assert orphan.ns("y") not in ip("netns", "list")
    assert not orphan_owner.exists()


async def test_the_delay_proxy_adds_its_delay_each_way_and_keeps_the_order() -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    proxy = DelayProxy("127.0.0.1", server.sockets[0].getsockname()[1], delay=0.2).start("127.0.0.1")
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        started = time.monotonic()
        for n in range(5):
            writer.write(b"%d;" % n)
        received = b""
        while len(received) < 10:
            received += await asyncio.wait_for(reader.read(1024), 5)
        assert received == b"0;1;2;3;4;"
        assert time.monotonic() - started >= 0.4  # 0.2 s to the server and 0.2 s back
        writer.close()
    finally:
        proxy.close()
        server.close()


def test_without_namespaces_ci_fails_and_elsewhere_the_suite_skips(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netns, "unavailable_reason", lambda: "network namespaces need root")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="required in CI: network namespaces need root"):
        netns.require_netns()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="need root"):
        netns.require_netns()
