"""A few-second end-to-end check of the bench machinery (for a test to call).

from bench.scenarios.smoke import smoke
result = smoke()          # raw_websockets peer, 5 members x 20 messages
assert result["ok"] and result["delivered"] == 100
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.harness.procs import ROOT, Server
from bench.load.loadgen import run_load
from devservers import free_port, wait_port


def smoke(members: int = 5, messages: int = 20, timeout: float = 30.0) -> dict[str, Any]:
    """Start the raw_websockets peer, run the load generator once, stop the peer.

    Returns the load generator's result dict (``ok``, ``delivered``, ``delivered_per_s``,
    ``p50_ms``, ``p99_ms``, ``errors``...). Raises RuntimeError if the peer does not start.
    Synchronous (it runs its own event loop); from async code use ``smoke_async``.
    """
    return asyncio.run(smoke_async(members, messages, timeout))


async def smoke_async(members: int = 5, messages: int = 20, timeout: float = 30.0) -> dict[str, Any]:
    """``smoke`` for callers already inside an event loop."""
    port = free_port()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    log = Path(tempfile.mkdtemp(prefix="bench-smoke-")) / "raw_websockets.log"
    argv = [sys.executable, "-m", "bench.peers.raw_websockets", "--port", str(port)]
    server = Server("raw_websockets", argv, env, log)
    server.start()
    try:
        if not await asyncio.to_thread(wait_port, port, "127.0.0.1", timeout, server.alive):
            raise RuntimeError(f"raw_websockets peer did not start:\n{server.tail()}")
        url = f"ws://127.0.0.1:{port}/ws/bench/smoke/"
        return await asyncio.wait_for(run_load(url, members, messages, stall_timeout=10.0), timeout)
    finally:
        server.stop()


if __name__ == "__main__":
    import json

    result = smoke()
    print(json.dumps(result, indent=2))
    sys.exit(0 if result.get("ok") else 1)
