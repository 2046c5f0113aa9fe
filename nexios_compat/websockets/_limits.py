"""Per-connection limits on incoming frames: size and rate (token bucket)."""

from __future__ import annotations

import time
import typing
from collections.abc import Callable, MutableMapping

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


# Keys an arriving frame is marked with: already judged (and passed), or the verdict it got.
CHECKED = "nexios_compat.checked"
VERDICT = "nexios_compat.verdict"


class ArrivalGate:
    """Judges frames as the server queues them: size, rate, and how many may wait for the handler.

    A handler busy elsewhere (the database, a slow hook) takes frames late; judged
    only then, a client could make the server hold any number of them. Past a
    limit the gate asks ``close_now`` to close at once (under daphne) and holds no
    further frame, only a small marker that tells ``receive`` the verdict.
    """

    __slots__ = ("close_now", "limiter", "max_queued", "verdict")

    def __init__(self, close_now: Callable[[int, str], object]) -> None:
        self.close_now = close_now
        self.limiter: FrameLimiter | None = None
        self.max_queued: int | None = get_config()["MAX_QUEUED_FRAMES"]
        self.verdict: tuple[int, str] | None = None

    def admit(
        self, message: MutableMapping[str, typing.Any], queued: int
    ) -> MutableMapping[str, typing.Any] | None:
        """Return what to queue for an arriving frame: the frame, a marker, or nothing."""
        if self.verdict is not None:
            return None  # the socket is closing: what follows is not held
        if self.max_queued is not None and queued >= self.max_queued:
            verdict: tuple[int, str] | str | None = (WS_1008_POLICY_VIOLATION, "Too many queued frames")
        else:
            if self.limiter is None:
                self.limiter = FrameLimiter()
            verdict = self.limiter.check(message)
        if verdict is None:
            message[CHECKED] = True
            return message
        if isinstance(verdict, str):  # DROP: the handler answers it, the frame is not kept
            return {"type": "websocket.receive", VERDICT: verdict}
        self.verdict = verdict
        self.close_now(*verdict)
        return {"type": "websocket.receive", VERDICT: verdict}


def limit_action(code: int, reason: str) -> str:
    """The ``rate_limited`` metric's action for a close verdict."""
    if code != 1008:
        return "too_big"
    return "queued" if reason == "Too many queued frames" else "close"
