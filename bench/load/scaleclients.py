"""The connection sweep's client processes: each runs a ``ScaleClient`` and obeys commands on a pipe.

``ScaleClients(servers, clients, groups)`` spawns them (``multiprocessing``); ``await
clients.call("grow" | "hold" | "stats", kwargs)`` sends a command to all and gathers the
answers (see ``bench.load.scaleload`` for what each does).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
from multiprocessing.connection import Connection
from typing import Any

from bench.load.scaleload import ClientSpec, ScaleClient
from devservers import raise_nofile_limit


async def _serve(spec: ClientSpec, pipe: Connection) -> None:
    client = ScaleClient(spec)
    loop = asyncio.get_running_loop()
    pipe.send({"ready": True})
    while True:
        cmd, kwargs = await loop.run_in_executor(None, pipe.recv)
        if cmd == "quit":
            await client.close()
            pipe.send({"bye": True})
            return
        try:
            if cmd == "grow":
                out: dict[str, Any] = await client.grow(**kwargs)
            elif cmd == "hold":
                out = await client.hold(**kwargs)
            else:
                out = client.stats()
        except Exception as exc:  # reported, not raised: the controller decides
            out = {"error": f"{type(exc).__name__}: {exc}"}
        pipe.send(out)


def _main(spec: ClientSpec, pipe: Connection) -> None:
    raise_nofile_limit(1 << 18)
    asyncio.run(_serve(spec, pipe))


class ScaleClients:
    """Several client processes (``multiprocessing``, spawned), driven together."""

    def __init__(self, servers: list[str], clients: int, groups: int) -> None:
        ctx = mp.get_context("spawn")
        self.pipes: list[Connection] = []
        self.procs: list[Any] = []
        for i in range(clients):
            ours, theirs = ctx.Pipe()
            spec = ClientSpec(index=i, servers=tuple(servers), groups=groups)
            proc = ctx.Process(target=_main, args=(spec, theirs), daemon=True, name=f"scaleload-{i}")
            proc.start()
            self.pipes.append(ours)
            self.procs.append(proc)
        for pipe in self.pipes:
            pipe.recv()

    @property
    def pids(self) -> list[int]:
        """The client processes' pids."""
        return [p.pid for p in self.procs]

    async def call(
        self, cmd: str, per_client: list[dict[str, Any]] | dict[str, Any] | None = None
    ) -> list[Any]:
        """Send ``cmd`` to every client (``per_client[i]`` or the same kwargs) and gather the answers."""
        kwargs = per_client if isinstance(per_client, list) else [per_client or {}] * len(self.pipes)
        for pipe, kw in zip(self.pipes, kwargs, strict=True):
            pipe.send((cmd, kw))
        return await asyncio.gather(*(asyncio.to_thread(p.recv) for p in self.pipes))

    async def stop(self) -> None:
        """Close every socket and end the processes."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.call("quit"), 30)
        for proc in self.procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
