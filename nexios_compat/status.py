"""Mirrors ``nexios.status`` for WebSockets: close codes, with Nexios's deprecated names.

HTTP status codes are left out: Django serves HTTP here (``http.HTTPStatus``).
"""

from __future__ import annotations

import warnings

__all__ = (
    "WS_1000_NORMAL_CLOSURE",
    "WS_1001_GOING_AWAY",
    "WS_1002_PROTOCOL_ERROR",
    "WS_1003_UNSUPPORTED_DATA",
    "WS_1005_NO_STATUS_RCVD",
    "WS_1006_ABNORMAL_CLOSURE",
    "WS_1007_INVALID_FRAME_PAYLOAD_DATA",
    "WS_1008_POLICY_VIOLATION",
    "WS_1009_MESSAGE_TOO_BIG",
    "WS_1010_MANDATORY_EXT",
    "WS_1011_INTERNAL_ERROR",
    "WS_1012_SERVICE_RESTART",
    "WS_1013_TRY_AGAIN_LATER",
    "WS_1014_BAD_GATEWAY",
    "WS_1015_TLS_HANDSHAKE",
)

# https://www.iana.org/assignments/websocket/websocket.xml#close-code-number
from .types import (
    WS_1000_NORMAL_CLOSURE,
    WS_1001_GOING_AWAY,
    WS_1002_PROTOCOL_ERROR,
    WS_1003_UNSUPPORTED_DATA,
    WS_1005_NO_STATUS_RCVD,
    WS_1006_ABNORMAL_CLOSURE,
    WS_1007_INVALID_FRAME_PAYLOAD_DATA,
    WS_1008_POLICY_VIOLATION,
    WS_1009_MESSAGE_TOO_BIG,
    WS_1010_MANDATORY_EXT,
    WS_1011_INTERNAL_ERROR,
    WS_1012_SERVICE_RESTART,
    WS_1013_TRY_AGAIN_LATER,
    WS_1014_BAD_GATEWAY,
    WS_1015_TLS_HANDSHAKE,
)

# Names Nexios (after Starlette) once gave the wrong numbers; they keep their old
# values and warn, exactly as ``nexios.status`` does.
__deprecated__ = {"WS_1004_NO_STATUS_RCVD": 1004, "WS_1005_ABNORMAL_CLOSURE": 1005}
_REPLACEMENTS = {
    "WS_1004_NO_STATUS_RCVD": "WS_1005_NO_STATUS_RCVD",
    "WS_1005_ABNORMAL_CLOSURE": "WS_1006_ABNORMAL_CLOSURE",
}


def __getattr__(name: str) -> int:
    """Return a deprecated name's value with a ``DeprecationWarning``."""
    if name in __deprecated__:
        warnings.warn(
            f"'{name}' is deprecated. Use '{_REPLACEMENTS[name]}' instead.",
            category=DeprecationWarning,
            stacklevel=2,
        )
        return __deprecated__[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    """List the current and the deprecated names."""
    return sorted([*__all__, *__deprecated__])
