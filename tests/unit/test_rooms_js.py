"""``rooms.js``'s reconnection delay, run under Node: full jitter, and the server's retry-after window."""

from __future__ import annotations

import json
import shutil
import subprocess

from devservers import REPO_ROOT
from tests.support.fixtures import require_service

ROOMS_JS = REPO_ROOT / "nexios_compat" / "static" / "nexios_compat" / "rooms.js"
OPTIONS = {"minDelay": 500, "maxDelay": 10000}


def delays(attempt: int, reason: str, draws: int = 2000) -> list[float]:
    """``draws`` values of ``reconnectDelay(OPTIONS, attempt, reason)``."""
    node = shutil.which("node")
    require_service("node", node is not None)
    assert node is not None
    script = (
        f"import {{reconnectDelay}} from {json.dumps(ROOMS_JS.as_uri())};\n"
        f"const o = {json.dumps(OPTIONS)};\n"
        f"console.log(JSON.stringify(Array.from({{length: {draws}}}, () => "
        f"reconnectDelay(o, {attempt}, {json.dumps(reason)}))));\n"
    )
    result = subprocess.run(
        [node, "--input-type=module", "-e", script], capture_output=True, text=True, timeout=30, check=True
    )
    return [float(d) for d in json.loads(result.stdout)]


def spread(values: list[float], window: float) -> tuple[float, float]:
    """The smallest and largest value as fractions of ``window``."""
    return min(values) / window, max(values) / window


def test_the_backoff_is_fully_jittered_from_zero_up_to_the_doubling_capped_window() -> None:
    for attempt, window in ((0, 500), (3, 4000), (10, 10000)):
        values = delays(attempt, "")
        low, high = spread(values, window)
        assert 0 <= low < 0.02 and 0.98 < high < 1, (attempt, low, high)
        # Uniform, not bunched: about half below the middle.
        assert 0.4 < sum(v < window / 2 for v in values) / len(values) < 0.6


def test_a_retry_after_in_the_close_reason_is_the_window() -> None:
    values = delays(0, "Server shutting down; retry-after=5")
    low, high = spread(values, 5000)
    assert 0 <= low < 0.02 and 0.98 < high < 1, (low, high)
    assert spread(delays(9, "Server shutting down; retry-after=0.5"), 500)[1] < 1


def test_the_plain_shutdown_reason_keeps_the_backoff() -> None:
    assert max(delays(0, "Server shutting down")) < 500
