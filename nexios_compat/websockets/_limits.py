"""Per-connection limits on incoming frames: size and rate (token bucket)."""

from __future__ import annotations

import time
import typing

from ..conf import get_config

# The close codes of websockets.utils, repeated here because base.py imports this module.
WS_1008_POLICY_VIOLATION = 1008
WS_1009_MESSAGE_TOO_BIG = 1009

DROP = "drop"
CLOSE = "close"


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = time.monotonic()

    def take(self, now: float | None = None) -> bool:
        """Spend one token if there is one; ``now`` is when the frame arrived (default: now)."""
        now = time.monotonic() if now is None else max(now, self.stamp)
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class FrameLimiter:
    """Decides what happens to an incoming frame: pass, drop, or close with a code."""

    __slots__ = ("bucket", "max_size", "policy")

    def __init__(self) -> None:
        config = get_config()
        self.max_size: int | None = config["MAX_MESSAGE_SIZE"]
        rate = config["RATE_LIMIT_MESSAGES"]
        self.bucket = TokenBucket(float(rate), float(config["RATE_LIMIT_BURST"])) if rate else None
        self.policy: str = config["RATE_LIMIT_POLICY"]
        if self.policy not in {DROP, CLOSE}:
            raise ValueError(f"RATE_LIMIT_POLICY must be 'drop' or 'close', not {self.policy!r}")

    def check(
        self, message: typing.Mapping[str, typing.Any], arrived: float | None = None
    ) -> tuple[int, str] | str | None:
        """Return ``None`` to pass, ``DROP``, or ``(close_code, reason)``.

        The rate is charged at ``arrived`` (when the server received the frame,
        ``time.monotonic()``), so frames that queued while this process was
        stalled are not taken for a burst the client never sent.
        """
        if self.max_size is not None:
            text = message.get("text")
            if text is not None:
                # A character is at most 4 bytes in UTF-8: encode only when it could matter.
                size = len(text) if len(text) * 4 <= self.max_size else len(text.encode("utf-8"))
            else:
                size = len(message.get("bytes") or b"")
            if size > self.max_size:
                return WS_1009_MESSAGE_TOO_BIG, f"Message larger than {self.max_size} bytes"
        if self.bucket is not None and not self.bucket.take(arrived):
            if self.policy == DROP:
                return DROP
            return WS_1008_POLICY_VIOLATION, "Rate limit exceeded"
        return None
