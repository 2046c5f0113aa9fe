"""Turn a payload into wire frames once per payload type, not once per member."""

from __future__ import annotations

import json
import struct
import typing

from . import metrics
from .types import PayloadTypeEnum

# A payload as it travels on the channel layer: its kind plus text or bytes.
KIND_JSON = "json"
KIND_TEXT = "text"
KIND_BYTES = "bytes"


def dumps(value: typing.Any) -> str:
    """Serialize JSON compactly, keeping non-ASCII characters; NaN and Infinity raise ``ValueError``."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _refuse_constant(name: str) -> typing.NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def loads(text: str) -> typing.Any:
    """Parse strict JSON: ``NaN``/``Infinity``, nesting deep enough to exhaust the
    recursion limit, and integers too long to convert all raise ``json.JSONDecodeError``.
    """
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError:
        raise
    except (ValueError, RecursionError) as exc:
        raise json.JSONDecodeError(f"Invalid JSON: {type(exc).__name__}: {exc}"[:200], text[:50], 0) from None


def pack(payload: typing.Any) -> tuple[str, str | None, bytes | None]:
    """Return ``(kind, text, data)`` for a payload: bytes stay bytes, str stays text."""
    if isinstance(payload, bytes | bytearray | memoryview):
        return KIND_BYTES, None, bytes(payload)
    if isinstance(payload, str):
        return KIND_TEXT, payload, None
    return KIND_JSON, dumps(payload), None


def unpack(kind: str, text: str | None, data: bytes | None) -> typing.Any:
    """Return the payload that ``pack`` was given."""
    if kind == KIND_JSON:
        return json.loads(text or "null")  # our own stored text: no need for strict parsing
    if kind == KIND_TEXT:
        return text or ""
    return bytes(data or b"")


def ack_frame(client_id: str, room: str, seq: int, epoch: str) -> str:
    """Return the frame that tells a sender its message ``client_id`` is stored as ``seq`` of ``epoch``."""
    return f'{{"type":"ack","id":{dumps(client_id)},"room":{dumps(room)},"seq":{seq},"epoch":{dumps(epoch)}}}'


# Envelope levels a member asks for: none, {"room","seq","payload"}, and that plus "epoch".
ENVELOPE_NONE = 0
ENVELOPE_SEQ = 1
ENVELOPE_EPOCH = 2


def server_frame(payload: bytes, binary: bool) -> bytes:
    """Return one unmasked, unfragmented WebSocket frame (RFC 6455 5.2) as a server sends it."""
    size = len(payload)
    head = 0x82 if binary else 0x81
    if size <= 125:
        return struct.pack("!BB", head, size) + payload
    if size <= 0xFFFF:
        return struct.pack("!BBH", head, 126, size) + payload
    return struct.pack("!BBQ", head, 127, size) + payload


class FrameCache:
    """Builds each frame variant of one message at most once."""

    __slots__ = ("_frames", "_last", "_wires", "data", "epoch", "kind", "room", "seq", "text")

    def __init__(
        self,
        room: str,
        kind: str,
        text: str | None,
        data: bytes | None,
        seq: int | None,
        epoch: str | None = None,
    ):
        self.room = room
        self.kind = kind
        self.text = text
        self.data = data
        self.seq = seq
        self.epoch = epoch
        self._frames: dict[tuple[PayloadTypeEnum, int], dict[str, typing.Any]] = {}
        self._wires: dict[tuple[PayloadTypeEnum, int], bytes | None] | None = None
        # The variant ``wire`` returned last: a room's members mostly share one.
        self._last: tuple[PayloadTypeEnum, int, bytes | None] | None = None

    def frame(self, payload_type: PayloadTypeEnum, envelope: int) -> dict[str, typing.Any]:
        """Return the ASGI send message for a channel of this payload type and envelope level."""
        key = (payload_type, envelope)
        frame = self._frames.get(key)
        if frame is None:
            frame = self._frames[key] = self._build(payload_type, envelope)
        return frame

    def wire(self, payload_type: PayloadTypeEnum, envelope: int) -> bytes | None:
        """Return the variant as the bytes of one server frame, framed once for every member.

        ``None`` for an empty payload, which daphne does not send at all: such a
        frame takes the ASGI path, as before.
        """
        last = self._last
        if last is not None and last[0] is payload_type and last[1] == envelope:
            return last[2]
        wires = self._wires
        if wires is None:
            wires = self._wires = {}
        key = (payload_type, envelope)
        if key in wires:
            data = wires[key]
        else:
            frame = self.frame(payload_type, envelope)
            text = frame.get("text")
            payload = text.encode("utf-8") if text is not None else frame["bytes"]
            data = wires[key] = server_frame(payload, text is None) if payload else None
            if data is not None:
                metrics.FRAMES_PREPARED.inc()
        self._last = (payload_type, envelope, data)
        return data

    def _build(self, payload_type: PayloadTypeEnum, envelope: int) -> dict[str, typing.Any]:
        kind, text, data = self.kind, self.text, self.data
        if kind == KIND_BYTES:
            assert data is not None
            if payload_type is PayloadTypeEnum.TEXT:
                try:
                    return {"type": "websocket.send", "text": data.decode("utf-8")}
                except UnicodeDecodeError:
                    pass
            return {"type": "websocket.send", "bytes": data}
        assert text is not None
        if payload_type is PayloadTypeEnum.JSON:
            body = text if kind == KIND_JSON else dumps(text)
            if envelope:
                seq = "null" if self.seq is None else str(self.seq)
                if envelope >= ENVELOPE_EPOCH:
                    seq += f',"epoch":{dumps(self.epoch)}'
                body = f'{{"room":{dumps(self.room)},"seq":{seq},"payload":{body}}}'
            return {"type": "websocket.send", "text": body}
        if payload_type is PayloadTypeEnum.BYTES:
            return {"type": "websocket.send", "bytes": text.encode("utf-8")}
        return {"type": "websocket.send", "text": text}
