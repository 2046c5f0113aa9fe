"""Under daphne a broadcast is framed once per variant and its bytes written to every member.

daphne serves ``tests.sites.framing.asgi`` (``/frame/{room}``: members of any payload type
and envelope; ``say`` broadcasts, ``echo`` replies around a broadcast). Members are raw
sockets, so each frame is seen byte for byte. ``nexios_compat_frames_prepared`` (read from
``/metrics`` as a delta) counts the frames framed once for all members.

- A broadcast to members of four variants (JSON, text, bytes, enveloped JSON) is framed four
  times, whatever the number of members, and each member gets exactly the frame a server
  sends for its variant: FIN, its opcode, no mask, no reserved bits, the payload.
- A member's direct replies (ASGI ``send``) and the broadcasts written to it through the
  prepared path reach it in the order the handler sent them.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator

import pytest

from devservers import DaphneServer
from tests.support.fault_probe import scrape, value
from tests.support.rawsocket import BINARY, TEXT, RawSocket, encode_frame, open_raw
from tests.support.site import migrated_database, server_env

SETTINGS = "tests.sites.framing.settings"
APP = "tests.sites.framing.asgi:application"
PREPARED = "nexios_compat_frames_prepared_total"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaphneServer]:
    db = migrated_database(tmp_path_factory.mktemp("framing"))
    daphne = DaphneServer(server_env(db, SETTINGS, debug=True), app=APP).start()  # DEBUG: /metrics is open
    try:
        yield daphne
    finally:
        daphne.stop()


def join(server: DaphneServer, room: str, query: str = "type=json") -> RawSocket:
    """Join ``room`` and read the handler's ``joined`` (the member is in the room then)."""
    ws = open_raw(server, f"/frame/{room}?{query}")
    assert ws.read_message(10).text == "joined"
    return ws


def expected_frame(opcode: int, payload: bytes) -> bytes:
    """A server's frame of ``payload`` as RFC 6455 5.2 writes it (FIN, unmasked), built here independently."""
    if len(payload) <= 125:
        return bytes([0x80 | opcode, len(payload)]) + payload
    return bytes([0x80 | opcode, 126]) + struct.pack("!H", len(payload)) + payload


def test_a_broadcast_is_framed_once_per_variant_and_every_member_gets_its_bytes(server: DaphneServer) -> None:
    room = "once"
    variants = {
        "type=json": (TEXT, b'"' + b"x" * 200 + b'"'),
        "type=text": (TEXT, b"x" * 200),
        "type=bytes": (BINARY, b"x" * 200),
        "type=json&envelope=1": (TEXT, b'{"room":"once","seq":null,"payload":"' + b"x" * 200 + b'"}'),
    }
    members = [(query, join(server, room, query)) for query in variants for _ in range(5)]
    before = scrape(server)
    members[0][1].send_text("say " + "x" * 200)
    for query, ws in members:
        opcode, payload = variants[query]
        frame = ws.read_frame(10)
        assert frame.raw == expected_frame(opcode, payload), query
    after = scrape(server)
    assert value(after, PREPARED) - value(before, PREPARED) == len(variants)
    sent = sum(value(after, "nexios_compat_messages_out_total", kind=k) for k in ("text", "bytes"))
    sent -= sum(value(before, "nexios_compat_messages_out_total", kind=k) for k in ("text", "bytes"))
    assert sent == len(members)  # every member's frame is counted as sent


def test_direct_replies_and_broadcasts_to_one_member_keep_their_order(server: DaphneServer) -> None:
    room = "order"
    sender, other = join(server, room), join(server, room)
    count = 50
    before = scrape(server)
    # Every command at once: the handler works through them while frames of both paths queue.
    sender.send_raw(b"".join(encode_frame(TEXT, f"echo {n}".encode()) for n in range(count)))
    seen = [sender.read_message(10).text for _ in range(3 * count)]
    assert seen == [text for n in range(count) for text in (f"before {n}", f'{{"n":{n}}}', f"after {n}")]
    assert [json.loads(other.read_message(10).text)["n"] for _ in range(count)] == list(range(count))
    # The broadcasts did take the prepared path (one JSON variant each).
    assert value(scrape(server), PREPARED) - value(before, PREPARED) == count
