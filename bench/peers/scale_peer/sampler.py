"""A sampling profiler for the sweep's daphnes, on when ``$SCALE_PROFILE`` names a file prefix.

Every 5 ms a thread looks at every other thread's stack and counts, per thread, the innermost
frame and the innermost frame of nexios_compat; every 5 s it writes the counts so far as JSON
to ``$SCALE_PROFILE.<pid>.json``. Where the event loop or the database thread spends its time
under the sweep's load, with no profiler to install.
"""

from __future__ import annotations

import collections
import json
import os
import sys
import threading
import time
import types


def _where(frame: types.FrameType | None) -> tuple[str, str]:
    leaf = ours = ""
    while frame is not None:
        code = frame.f_code
        name = f"{os.path.basename(code.co_filename)}:{code.co_name}"
        if not leaf:
            leaf = name
        if not ours and "nexios_compat" in code.co_filename:
            ours = f"{code.co_filename.split('nexios_compat/')[-1]}:{code.co_name}:{frame.f_lineno}"
        frame = frame.f_back
    return leaf, ours


def _run(prefix: str) -> None:
    me = threading.get_ident()
    counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    last = time.monotonic()
    while True:
        time.sleep(0.005)
        names = {t.ident: t.name for t in threading.enumerate()}
        for ident, frame in sys._current_frames().items():
            if ident == me:
                continue
            leaf, ours = _where(frame)
            thread = names.get(ident, str(ident))
            counts[thread][f"{leaf} <- {ours}"] += 1
        if time.monotonic() - last > 5:
            last = time.monotonic()
            top = {t: dict(c.most_common(25)) | {"_total": sum(c.values())} for t, c in counts.items()}
            with open(f"{prefix}.{os.getpid()}.json", "w") as f:
                json.dump(top, f, indent=1)


def start() -> None:
    """Start the sampler thread if ``$SCALE_PROFILE`` is set."""
    prefix = os.environ.get("SCALE_PROFILE")
    if prefix:
        threading.Thread(target=_run, args=(prefix,), daemon=True, name="scale-sampler").start()
