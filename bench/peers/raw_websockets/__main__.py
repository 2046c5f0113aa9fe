"""``python -m bench.peers.raw_websockets --port PORT``: room broadcast with the websockets lib.

Each text frame received on ``/ws/bench/{room}/`` is checked to be JSON (parsed once) and the
original text is broadcast to every member of the room, sender included.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal

from websockets.asyncio.server import ServerConnection, broadcast, serve

from devservers import raise_nofile_limit

PREFIX = "/ws/bench/"
ROOMS: dict[str, set[ServerConnection]] = {}


async def handler(ws: ServerConnection) -> None:
    path = ws.request.path if ws.request is not None else ""
    if not (path.startswith(PREFIX) and path.endswith("/") and len(path) > len(PREFIX) + 1):
        await ws.close(4404, "no such route")
        return
    room = path[len(PREFIX) : -1]
    members = ROOMS.setdefault(room, set())
    members.add(ws)
    try:
        async for message in ws:
            text = message if isinstance(message, str) else message.decode()
            try:
                json.loads(text)
            except ValueError:
                continue
            broadcast(members, text)
    finally:
        members.discard(ws)
        if not members:
            ROOMS.pop(room, None)


async def main(host: str, port: int) -> None:
    raise_nofile_limit()
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with serve(
        handler,
        host,
        port,
        compression=None,
        max_size=2**20,
        ping_interval=None,
        backlog=2048,
    ):
        await stop


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    asyncio.run(main(args.host, args.port))
