"""Hosts in network namespaces whose links a test can cut, and a delaying TCP proxy.

:class:`Topology` puts each host in its own namespace (``nxc-<run>-<host>``),
all plugged into one bridge that lives in a namespace of its own, plus a
link from the test's namespace so the test reaches every host. A host gets
``10.213.<block>.<n>/24``; the block is picked at random among those no
address of the test's namespace uses. Cutting ``a``/``b`` touches only the
namespaces of ``a`` and ``b``, so ``d1``/``redis`` can be cut while
``d2``/``redis`` still talks:

- ``mode="drop"``: each side's neighbour entry for the other points at a MAC
  nobody has, so packets vanish: connects and open connections hang.
- ``mode="reject"``: a ``prohibit`` route on each side: the hosts' own
  sends fail at once (``EACCES``), as behind a rejecting firewall.

Namespaces are removed on exit, also when the test fails; a run records its
owner's pid in ``/run/nxc-netns/`` and :func:`remove_leftovers` deletes the
namespaces of runs whose owner is gone (a SIGKILLed pytest).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

from devservers import ServerProcess

PREFIX = "nxc-"
OWNERS = Path("/run/nxc-netns")
NETNS_DIR = Path("/run/netns")
BOGUS_MAC = "02:00:5e:00:de:ad"
CutMode = Literal["drop", "reject"]


def ip(*args: str, check: bool = True) -> str:
    """Run ``ip *args``; return its stdout (raise with its stderr when ``check``)."""
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


def unavailable_reason() -> str | None:
    """Why namespaces cannot be made here (None when they can)."""
    if shutil.which("ip") is None:
        return "iproute2's ip is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"{PREFIX}probe-{uuid.uuid4().hex[:6]}"
    try:
        ip("netns", "add", probe)
    except RuntimeError as exc:
        return f"cannot create a network namespace: {exc}"
    ip("netns", "del", probe, check=False)
    return None


def require_netns() -> None:
    """Skip the test when namespaces are unavailable; fail instead when ``$CI`` is set."""
    reason = unavailable_reason()
    if reason is None:
        return
    import pytest

    if os.environ.get("CI"):
        pytest.fail(f"network namespace tests are required in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_leftovers() -> list[str]:
    """Delete ``nxc-`` namespaces of runs whose owning process is gone; return their names."""
    removed = []
    names = sorted(p.name for p in NETNS_DIR.glob(f"{PREFIX}*")) if NETNS_DIR.is_dir() else []
    for name in names:
        run = name.split("-")[1] if name.count("-") >= 2 else ""
        owner = OWNERS / run
        try:
            pid = int(owner.read_text())
        except (OSError, ValueError):
            pid = 0
        if pid and _alive(pid):
            continue  # another live session's topology
        ip("netns", "del", name, check=False)
        owner.unlink(missing_ok=True)
        removed.append(name)
    return removed


def _free_block() -> int:
    """A third octet of 10.213.0.0/16 that no address or route of this namespace uses."""
    used = ip("-j", "addr") + ip("-j", "route")
    for _ in range(100):
        block = random.randrange(1, 255)
        if f"10.213.{block}." not in used:
            return block
    raise RuntimeError("no free 10.213.x.0/24 block")


class Topology:
    """Hosts, each in its own namespace on one bridge; the test's namespace is on it too."""

    def __init__(self, hosts: Sequence[str]) -> None:
        self.run = uuid.uuid4().hex[:6]
        self.hosts = list(hosts)
        self.addr: dict[str, str] = {}
        self._macs: dict[str, str] = {}
        self._created: list[str] = []

    def ns(self, host: str) -> str:
        """The namespace of ``host`` (``"bridge"`` is the bridge's)."""
        return f"{PREFIX}{self.run}-{host}"

    def exec_argv(self, host: str) -> list[str]:
        """argv prefix running a command in ``host``'s namespace."""
        return ["ip", "netns", "exec", self.ns(host)]

    def place(self, server: ServerProcess, host: str) -> ServerProcess:
        """Make ``server`` listen on ``host``'s address, inside its namespace (before it starts)."""
        server.host = self.addr[host]
        server.netns_exec = self.exec_argv(host)
        return server

    def __enter__(self) -> Self:
        OWNERS.mkdir(parents=True, exist_ok=True)
        (OWNERS / self.run).write_text(str(os.getpid()))
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def _add_ns(self, host: str) -> str:
        name = self.ns(host)
        ip("netns", "add", name)
        self._created.append(name)
        ip("-n", name, "link", "set", "lo", "up")
        return name

    def _build(self) -> None:
        block = _free_block()
        bridge = self._add_ns("bridge")
        ip("-n", bridge, "link", "add", "br0", "type", "bridge")
        ip("-n", bridge, "link", "set", "br0", "up")
        # The test's own end, in this namespace: its name must be unique here.
        root_if = f"nxc{self.run}"
        ip("link", "add", root_if, "type", "veth", "peer", "name", "p-test", "netns", bridge)
        ip("addr", "add", f"10.213.{block}.1/24", "dev", root_if)
        ip("link", "set", root_if, "up")
        self._plug(bridge, "p-test")
        for n, host in enumerate(self.hosts, start=10):
            name = self._add_ns(host)
            ip(
                "-n",
                name,
                "link",
                "add",
                "eth0",
                "type",
                "veth",
                "peer",
                "name",
                f"p-{host}",
                "netns",
                bridge,
            )
            self.addr[host] = f"10.213.{block}.{n}"
            ip("-n", name, "addr", "add", f"{self.addr[host]}/24", "dev", "eth0")
            ip("-n", name, "link", "set", "eth0", "up")
            self._plug(bridge, f"p-{host}")
            self._macs[host] = json.loads(ip("-j", "-n", name, "link", "show", "eth0"))[0]["address"]
        self.test_addr = f"10.213.{block}.1"

    @staticmethod
    def _plug(bridge: str, port: str) -> None:
        ip("-n", bridge, "link", "set", port, "master", "br0")
        ip("-n", bridge, "link", "set", port, "up")

    def cut(self, a: str, b: str, mode: CutMode = "drop") -> None:
        """Cut the link between hosts ``a`` and ``b`` (both directions), leaving every other link."""
        for near, far in ((a, b), (b, a)):
            if mode == "drop":
                self._neigh(near, far, BOGUS_MAC)
            else:
                ip("-n", self.ns(near), "route", "replace", "prohibit", f"{self.addr[far]}/32")

    def restore(self, a: str, b: str) -> None:
        """Undo :meth:`cut` (either mode)."""
        for near, far in ((a, b), (b, a)):
            ip("-n", self.ns(near), "route", "del", f"{self.addr[far]}/32", check=False)
            self._neigh(near, far, self._macs[far])

    def _neigh(self, near: str, far: str, mac: str) -> None:
        ip(
            "-n",
            self.ns(near),
            "neigh",
            "replace",
            self.addr[far],
            "lladdr",
            mac,
            "dev",
            "eth0",
            "nud",
            "permanent",
        )

    def close(self) -> None:
        """Delete every namespace of this topology (their veths go with them)."""
        for name in reversed(self._created):
            ip("netns", "del", name, check=False)
        self._created.clear()
        (OWNERS / self.run).unlink(missing_ok=True)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class DelayProxy:
    """A TCP proxy that forwards each chunk ``delay`` seconds after it arrived, in order, both ways.

    It runs its own event loop on a thread, so a test whose loop blocks (starting a server,
    a synchronous query) does not stall the connections it carries.
    """

    def __init__(self, target_host: str, target_port: int, *, delay: float = 0.0) -> None:
        self.target = (target_host, target_port)
        self.delay = delay
        self.host = ""
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="delay-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    def start(self, host: str) -> Self:
        """Listen on ``host`` (a free port: ``.port``)."""
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._accept, host, 0), self._loop
        ).result(timeout=10)
        self.host, self.port = host, self._server.sockets[0].getsockname()[1]
        return self

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        # Chunks wait in a queue with their arrival time, so the delay adds latency
        # without limiting throughput to one chunk per delay.
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        forward = asyncio.create_task(self._forward(queue, dst))
        self._tasks.add(forward)
        forward.add_done_callback(self._tasks.discard)
        try:
            while data := await src.read(65536):
                queue.put_nowait((time.monotonic(), data))
        except OSError:
            pass
        finally:
            queue.put_nowait((time.monotonic(), b""))
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await forward

    async def _forward(self, queue: asyncio.Queue[tuple[float, bytes]], dst: asyncio.StreamWriter) -> None:
        try:
            while True:
                arrived, data = await queue.get()
                wait = arrived + self.delay - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)  # the latency being simulated, not synchronisation
                if not data:
                    break
                dst.write(data)
                await dst.drain()
        finally:
            dst.close()

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in self._writers:  # a server must not keep a session open through us
            writer.close()

    def close(self) -> None:
        """Stop listening, cut every proxied connection, stop the thread."""
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._loop.close()
