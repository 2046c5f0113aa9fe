"""A raw WebSocket client over a plain TCP socket, for frames no real client sends.

``RawSocket.open(port, path, origin=...)`` (or ``open_raw(server, path)``) completes the
handshake; then ``send_frame(opcode, payload, fin=..., rsv=..., masked=..., length=...)``
writes one frame exactly as asked (client frames are masked unless
``masked=False``), ``read_frame()`` parses one server frame, and
``read_until_closed()`` reports how the server ended the connection: the
close frame's code, or ``None`` when it dropped the TCP connection without
one. ``reset()`` closes with a TCP RST; ``drop()`` closes without a close
frame; ``close(code)`` performs the closing handshake.

The server these tests talk to is started by ``tests/support/site.py``.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import os
import socket
import struct
import time
import typing

from devservers import DaphneServer

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class HandshakeRefused(Exception):
    """The server answered the upgrade with something other than 101."""

    def __init__(self, status: int, head: bytes) -> None:
        super().__init__(f"handshake refused with HTTP {status}: {head[:200]!r}")
        self.status = status


@dataclasses.dataclass
class Frame:
    fin: bool
    opcode: int
    payload: bytes
    raw: bytes = b""  # the frame's bytes as they came, header included (read_frame)

    @property
    def close_code(self) -> int | None:
        if self.opcode != CLOSE or len(self.payload) < 2:
            return None
        return int(struct.unpack("!H", self.payload[:2])[0])

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8")


@dataclasses.dataclass
class Ending:
    """How the server ended a connection."""

    close_code: int | None  # None: the TCP connection ended without a close frame
    frames: list[Frame]  # data and control frames received before the end
    reset: bool = False  # the TCP connection was reset (RST) rather than closed (FIN)

    @property
    def texts(self) -> list[str]:
        return [f.payload.decode("utf-8", "replace") for f in self.frames if f.opcode == TEXT]


def encode_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = True,
    length: int | None = None,
    length_form: str | None = None,
) -> bytes:
    """One frame; ``length`` overrides the announced length, ``length_form`` forces 7/16/64 bits."""
    announced = len(payload) if length is None else length
    first = (0x80 if fin else 0) | ((rsv & 0x7) << 4) | (opcode & 0xF)
    mask_bit = 0x80 if masked else 0
    form = length_form or ("7" if announced < 126 else "16" if announced < 65536 else "64")
    if form == "7":
        head = struct.pack("!BB", first, mask_bit | announced)
    elif form == "16":
        head = struct.pack("!BBH", first, mask_bit | 126, announced)
    else:
        head = struct.pack("!BBQ", first, mask_bit | 127, announced)
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + mask(payload, key)


def mask(payload: bytes, key: bytes) -> bytes:
    """XOR ``payload`` with the repeating 4-byte ``key``."""
    if not payload:
        return b""
    repeated = (key * (len(payload) // 4 + 1))[: len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(len(payload), "big")


def close_payload(code: int | None, reason: bytes = b"") -> bytes:
    return b"" if code is None else struct.pack("!H", code) + reason


class RawSocket:
    """One client connection speaking WebSocket by hand."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    @classmethod
    def open(
        cls,
        port: int,
        path: str,
        *,
        origin: str | None = None,
        host: str | None = None,
        timeout: float = 5.0,
        extra_headers: tuple[tuple[str, str], ...] = (),
    ) -> RawSocket:
        """Connect to 127.0.0.1:``port`` and complete the opening handshake."""
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        raw = cls(sock)
        try:
            raw.handshake(path, origin=origin, host=host or f"127.0.0.1:{port}", extra_headers=extra_headers)
        except BaseException:
            sock.close()
            raise
        return raw

    def handshake(
        self, path: str, *, origin: str | None, host: str, extra_headers: tuple[tuple[str, str], ...] = ()
    ) -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {host}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        if origin is not None:
            lines.append(f"Origin: {origin}")
        lines += [f"{name}: {value}" for name, value in extra_headers]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"server closed during the handshake: {self.buffer!r}")
            self.buffer += chunk
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status = int(head.split(b" ", 2)[1])
        if status != 101:
            raise HandshakeRefused(status, head)
        expected = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest())
        if expected not in head:
            raise ConnectionError(f"bad Sec-WebSocket-Accept in {head!r}")

    # Sending -------------------------------------------------------------

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_frame(self, opcode: int, payload: bytes = b"", **kwargs: object) -> None:
        self.sock.sendall(encode_frame(opcode, payload, **kwargs))  # type: ignore[arg-type]

    def send_text(self, text: str) -> None:
        self.send_frame(TEXT, text.encode("utf-8"))

    # Receiving -----------------------------------------------------------

    def _fill(self, need: int, deadline: float) -> None:
        while len(self.buffer) < need:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no frame within the deadline (have {len(self.buffer)} bytes)")
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed by the server")
            self.buffer += chunk

    def read_frame(self, timeout: float = 5.0) -> Frame:
        """Parse one server frame (EOFError on TCP close, TimeoutError when none comes)."""
        deadline = time.monotonic() + timeout
        self._fill(2, deadline)
        b0, b1 = self.buffer[0], self.buffer[1]
        length, offset = b1 & 0x7F, 2
        if length == 126:
            self._fill(4, deadline)
            length, offset = struct.unpack("!H", self.buffer[2:4])[0], 4
        elif length == 127:
            self._fill(10, deadline)
            length, offset = struct.unpack("!Q", self.buffer[2:10])[0], 10
        if b1 & 0x80:
            raise AssertionError("the server sent a masked frame")
        self._fill(offset + length, deadline)
        payload = self.buffer[offset : offset + length]
        raw, self.buffer = self.buffer[: offset + length], self.buffer[offset + length :]
        return Frame(bool(b0 & 0x80), b0 & 0x0F, payload, raw)

    def read_message(self, timeout: float = 5.0) -> Frame:
        """Read the next data frame, answering pings and skipping pongs."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self.read_frame(max(0.0, deadline - time.monotonic()))
            if frame.opcode == PING:
                self.send_frame(PONG, frame.payload)
                continue
            if frame.opcode == PONG:
                continue
            return frame

    def read_until_closed(self, timeout: float = 5.0) -> Ending:
        """Read until the server closes: answer its close frame and wait for the TCP end."""
        deadline = time.monotonic() + timeout
        frames: list[Frame] = []
        while True:
            try:
                frame = self.read_frame(max(0.0, deadline - time.monotonic()))
            except EOFError:
                return Ending(None, frames)
            except ConnectionResetError:
                return Ending(None, frames, reset=True)
            if frame.opcode == CLOSE:
                code = frame.close_code if frame.payload else 1005
                with contextlib.suppress(OSError):
                    self.send_frame(CLOSE, frame.payload[:2])
                self._wait_eof(deadline)
                return Ending(code, frames)
            frames.append(frame)

    def _wait_eof(self, deadline: float) -> None:
        try:
            while time.monotonic() < deadline:
                self.sock.settimeout(max(0.01, deadline - time.monotonic()))
                if not self.sock.recv(65536):
                    return
        except OSError:
            return

    def ping_pong(self, payload: bytes, timeout: float = 5.0) -> list[Frame]:
        """Send a ping and return the frames received before its pong (EOFError if it never comes)."""
        self.send_frame(PING, payload)
        deadline = time.monotonic() + timeout
        frames: list[Frame] = []
        while True:
            frame = self.read_frame(max(0.0, deadline - time.monotonic()))
            if frame.opcode == PONG and frame.payload == payload:
                return frames
            if frame.opcode == CLOSE:
                raise EOFError(f"closed with {frame.close_code} while waiting for a pong")
            frames.append(frame)

    # Ending ----------------------------------------------------------------

    def close(self, code: int = 1000, timeout: float = 5.0) -> Ending:
        """Perform the closing handshake; return the server's answer."""
        self.send_frame(CLOSE, close_payload(code))
        try:
            return self.read_until_closed(timeout)
        finally:
            self.sock.close()

    def reset(self) -> None:
        """Abort with a TCP RST (SO_LINGER 0), no close frame."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def drop(self) -> None:
        """Close the TCP connection (FIN) without a close frame."""
        self.sock.close()


def open_raw(server: DaphneServer, path: str, **kwargs: typing.Any) -> RawSocket:
    """A raw socket on ``server``'s ``path``, handshake done, with the server's own Origin."""
    kwargs.setdefault("origin", server.url)
    return RawSocket.open(server.port, path, **kwargs)
