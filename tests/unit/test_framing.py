"""A broadcast's wire frames: built once per variant, byte for byte what autobahn frames, only where safe."""

from __future__ import annotations

import functools
import typing

import pytest
from autobahn.websocket.protocol import PreparedMessage

from nexios_compat import metrics
from nexios_compat.encoding import ENVELOPE_SEQ, FrameCache, pack, server_frame
from nexios_compat.types import PayloadTypeEnum
from nexios_compat.websockets._daphne import prepared_transport
from nexios_compat.websockets.base import WebSocket, WebSocketState


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536])
@pytest.mark.parametrize("binary", [False, True])
def test_a_server_frame_is_what_autobahn_prepares(size: int, binary: bool) -> None:
    payload = b"a" * size
    prepared = PreparedMessage(payload, binary, applyMask=False, doNotCompress=True)
    assert server_frame(payload, binary) == prepared.payloadHybi


def test_each_variant_is_framed_once_and_an_empty_payload_not_at_all() -> None:
    cache = FrameCache("r", *pack({"a": "é"}), 7, "e1")
    before = metrics.FRAMES_PREPARED.count
    bare = cache.wire(PayloadTypeEnum.JSON, 0)
    assert bare == server_frame('{"a":"é"}'.encode(), False)
    assert cache.wire(PayloadTypeEnum.JSON, 0) is bare
    enveloped = cache.wire(PayloadTypeEnum.JSON, ENVELOPE_SEQ)
    assert enveloped == server_frame('{"room":"r","seq":7,"payload":{"a":"é"}}'.encode(), False)
    assert cache.wire(PayloadTypeEnum.BYTES, 0) == server_frame('{"a":"é"}'.encode(), True)
    assert metrics.FRAMES_PREPARED.count - before == 3
    # daphne sends nothing for an empty frame: such a broadcast keeps the ASGI path.
    assert FrameCache("r", *pack(""), None).wire(PayloadTypeEnum.TEXT, 0) is None
    assert metrics.FRAMES_PREPARED.count - before == 3


class Protocol:
    """What ``prepared_transport`` reads of an autobahn protocol, open and plain by default."""

    STATE_OPEN = 3

    def __init__(self, **overrides: typing.Any) -> None:
        self.state = 3
        self._perMessageCompress: object | None = None
        self.logFrames = self.logOctets = False
        self.trackedTimings = None
        self.send_queue: list[bytes] = []
        self.maxMessagePayloadSize = 1 << 20
        self.autoFragmentSize = 0
        self.transport = self  # anything with write()
        self.__dict__.update(overrides)

    def write(self, data: bytes) -> None:
        raise AssertionError("not written here")


def test_prepared_frames_go_only_to_plain_open_sockets() -> None:
    plain = Protocol()
    assert prepared_transport(plain) == (plain, 1 << 20)
    assert prepared_transport(Protocol(autoFragmentSize=4096)) is not None
    assert prepared_transport(Protocol(autoFragmentSize=4096))[1] == 4096  # type: ignore[index]
    # permessage-deflate compresses each frame in the connection's own context: ASGI path.
    assert prepared_transport(Protocol(_perMessageCompress=object())) is None
    assert prepared_transport(Protocol(state=2)) is None  # closing
    assert prepared_transport(Protocol(logFrames=True)) is None
    assert prepared_transport(Protocol(trackedTimings=object())) is None
    assert prepared_transport(None) is None  # another server


class Server:
    """daphne's ``Server`` as ``daphne_protocol`` sees it: ``send`` is ``partial(handle_reply, protocol)``."""

    def __init__(self, protocol: Protocol) -> None:
        self.connections: dict[Protocol, dict[str, typing.Any]] = {protocol: {}}  # not marked disconnected

    async def handle_reply(self, protocol: typing.Any, message: dict[str, typing.Any]) -> None:
        protocol.handle_reply(message)


Server.handle_reply.__module__ = "daphne.server"


class Closing(Protocol):
    """A protocol whose close handshake began: autobahn's ``sendMessage`` raises ``Disconnected``."""

    def handle_reply(self, message: dict[str, typing.Any]) -> None:
        raise RuntimeError("Attempt to send on a closed protocol")


async def test_a_frame_to_a_closing_socket_under_daphne_is_skipped_not_raised() -> None:
    # A presence flush met a socket whose close handshake had begun: autobahn raised
    # Disconnected, the flush task died, and the room's other members missed the diff.
    protocol = Closing(state=2)
    send = functools.partial(Server(protocol).handle_reply, protocol)

    async def receive() -> dict[str, typing.Any]:
        raise AssertionError("not read")

    ws = WebSocket({"type": "websocket", "path": "/", "headers": []}, receive, send)
    ws.application_state = ws.client_state = WebSocketState.CONNECTED
    assert await ws.send_frame({"type": "websocket.send", "text": "diff"}) is False
    protocol.state = Protocol.STATE_OPEN
    with pytest.raises(RuntimeError):  # open: the frame goes to the protocol
        await ws.send_frame({"type": "websocket.send", "text": "diff"})
