"""Malformed and odd WebSocket frames against a real daphne, written by hand on a TCP socket.

One daphne (``tests.sites.security.asgi``: the project's application) on its own SQLite
file for the module. A bystander sits in the fuzzed room for the whole
module and must keep receiving; every test ends with a fresh connection that
must still work. What reaches history is read from the SQLite file: only
valid JSON chat messages (and the room's join/leave notices), as strict JSON.

What the client sees (recorded in ``OBSERVED``, printed at teardown):

- daphne (autobahn, ``failByDrop``) answers every protocol violation, invalid
  UTF-8 in a text frame and frames over its ``--websocket_max_frame_size`` by
  *aborting the TCP connection without a close frame*: no 1002/1007/1009 is
  ever sent; the client sees 1006. The application still gets
  ``websocket.disconnect`` and cleans up.
- A client close frame with a valid code is answered with 1000 (autobahn does
  not echo the code).
- Our endpoints close with 1003 when a frame does not fit their encoding
  (binary to a JSON or text endpoint, malformed JSON) and with 1009 for
  messages over ``MAX_MESSAGE_SIZE``.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import json
import threading
import typing
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devservers import DaphneServer
from tests.support.helpers import history, wait_for
from tests.support.rawsocket import (
    BINARY,
    CLOSE,
    CONT,
    PING,
    PONG,
    TEXT,
    Ending,
    Frame,
    RawSocket,
    close_payload,
    encode_frame,
    open_raw,
)
from tests.support.site import migrated_database, start_server

ROOM = "fuzz"
CHAT_PATH = f"/ws/chat/{ROOM}/?username=fuzz"
TIMEOUT = 10.0
DROPPED = None  # close code recorded when the server ends the TCP connection without a close frame

OBSERVED: collections.Counter[str] = collections.Counter()
FRAMES_SENT = collections.Counter[str]()  # generated frames written, by outcome kind
_tokens = itertools.count()


def new_token() -> str:
    return f"tok-{uuid.uuid4().hex[:8]}-{next(_tokens)}"


def strict_json(text: str) -> typing.Any:
    """``json.loads`` refusing NaN and Infinity, which browsers' ``JSON.parse`` cannot read."""

    def refuse(constant: str) -> typing.NoReturn:
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


# The server and the bystander ------------------------------------------------------


@dataclasses.dataclass
class Module:
    server: DaphneServer
    db: Path
    saved_tokens: set[str]  # chat contents the tests expect in history
    # Contents that a known bug may lose (see test_messages_received_before_a_close_are_all_handled).
    maybe_tokens: set[str]
    bystander: Bystander
    examples: list[str] = dataclasses.field(default_factory=list)  # generated sequences, for failures


class Bystander:
    """A client in the fuzzed room whose reader thread collects everything it is sent."""

    def __init__(self, server: DaphneServer) -> None:
        self.ws = open_raw(server, f"/ws/chat/{ROOM}/?username=bystander")
        self.frames: list[Frame] = []
        self.ended: BaseException | None = None
        self.lock = threading.Lock()
        self._stop = False
        self.thread = threading.Thread(target=self._read, name="bystander", daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            while not self._stop:
                try:
                    frame = self.ws.read_frame(timeout=0.5)
                except TimeoutError:
                    continue
                if frame.opcode == PING:
                    self.ws.send_frame(PONG, frame.payload)
                with self.lock:
                    self.frames.append(frame)
        except BaseException as exc:
            if not self._stop:
                self.ended = exc

    def chat_contents(self) -> set[str]:
        with self.lock:
            texts = [f.text for f in self.frames if f.opcode == TEXT]
        return {payload["message"] for payload in map(json.loads, texts) if payload.get("type") == "chat"}

    def stop(self) -> Ending:
        self._stop = True
        self.thread.join(timeout=5)
        return self.ws.close()


@pytest.fixture(scope="module")
def module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Module]:
    db = migrated_database(tmp_path_factory.mktemp("fuzz"))
    server = start_server(db)
    bystander = Bystander(server)
    state = Module(server, db, set(), set(), bystander)
    try:
        yield state
        # The bystander is still connected and saw every chat message that was saved.
        assert bystander.ended is None, f"the bystander's connection ended: {bystander.ended!r}"
        stored = check_history(state)
        try:
            wait_for(
                lambda: stored <= bystander.chat_contents(),
                "the bystander to receive every saved chat message",
                timeout=TIMEOUT,
            )
        except AssertionError:
            missing = stored - bystander.chat_contents()
            culprits = [e for e in state.examples if any(t in e for t in missing)]
            raise AssertionError(f"bystander missed {sorted(missing)}, sent in {culprits}") from None
        assert bystander.stop().close_code == 1000
    finally:
        server.stop()
        print(f"----- {FRAMES_SENT['generated']} generated frames sent -----")
        print("----- close codes observed (None: TCP dropped without a close frame) -----")
        for key, count in sorted(OBSERVED.items()):
            print(f"{count:6d}  {key}")
        print(f"----- daphne port {server.port} log (tail) -----\n{server.log()[-5000:]}")
        server.close()


def check_history(state: Module) -> set[str]:
    """Only valid chat messages and join/leave notices were saved, as strict JSON; return the chats."""
    saved_chat = []
    for kind, text in history(state.db, ROOM):
        assert kind == "json"
        assert text is not None
        payload = strict_json(text)
        assert payload["type"] in {"system", "chat"}, payload
        if payload["type"] == "chat":
            saved_chat.append(payload["message"])
    assert len(saved_chat) == len(set(saved_chat))
    stored = set(saved_chat)
    missing = state.saved_tokens - stored
    culprits = [e for e in state.examples if any(t in e for t in missing)]
    assert not missing, f"valid chat messages not saved: {sorted(missing)}, sent in {culprits}"
    unexpected = stored - state.saved_tokens - state.maybe_tokens
    assert not unexpected, f"saved but never validly sent: {sorted(unexpected)}"
    return stored


def joined(ws: RawSocket) -> RawSocket:
    """Wait for the connection's own join notice (earlier connections' notices may come first)."""
    while '"fuzz joined"' not in ws.read_message(TIMEOUT).text:
        pass
    return ws


def assert_server_healthy(state: Module) -> None:
    """A fresh connection works, and the bystander gets its message."""
    token = new_token()
    ws = open_raw(state.server, CHAT_PATH)
    ws.send_text(json.dumps({"type": "message", "content": token}))
    state.saved_tokens.add(token)
    while token not in ws.read_message(TIMEOUT).text:
        pass
    assert ws.close().close_code == 1000
    wait_for(
        lambda: token in state.bystander.chat_contents(), "the bystander to get the message", timeout=TIMEOUT
    )


# Hand-picked cases ------------------------------------------------------------------


def chat(content: str) -> bytes:
    return json.dumps({"type": "message", "content": content}).encode()


INVALID_UTF8 = [
    b"\xff",
    b"\xc0\x80",  # overlong NUL
    b"\xed\xa0\x80",  # UTF-16 surrogate
    b"\xf4\x90\x80\x80",  # above U+10FFFF
    b"\xe2\x82",  # truncated
    b'{"type":"message","content":"\xfe"}',
]

# name -> (path, frames, expected close code, whether the frames carry a chat message to save)
Case = tuple[str, list[bytes], int | None]


def m(opcode: int, payload: bytes = b"", **kwargs: typing.Any) -> bytes:
    return encode_frame(opcode, payload, **kwargs)


CASES: dict[str, Case] = {
    **{f"invalid-utf8-{i}": (CHAT_PATH, [m(TEXT, bad)], DROPPED) for i, bad in enumerate(INVALID_UTF8)},
    "invalid-utf8-across-fragments": (
        CHAT_PATH,
        [m(TEXT, b'{"type":"message","content":"\xe2\x82', fin=False), m(CONT, b'"}')],
        DROPPED,
    ),
    "binary-to-json-endpoint": (CHAT_PATH, [m(BINARY, chat("x"))], 1003),
    "binary-to-text-endpoint": ("/seeds/ws", [m(BINARY, b"hello")], 1003),
    "malformed-json": (CHAT_PATH, [m(TEXT, b'{"type": "message", ')], 1003),
    "empty-text": (CHAT_PATH, [m(TEXT, b"")], 1003),
    "reserved-data-opcode": (CHAT_PATH, [m(3, b"x")], DROPPED),
    "reserved-control-opcode": (CHAT_PATH, [m(0xB, b"x")], DROPPED),
    "rsv-bits": (CHAT_PATH, [m(TEXT, chat("x"), rsv=4)], DROPPED),
    "unmasked": (CHAT_PATH, [m(TEXT, chat("x"), masked=False)], DROPPED),
    "continuation-first": (CHAT_PATH, [m(CONT, b"x")], DROPPED),
    "text-inside-fragmented": (CHAT_PATH, [m(TEXT, b"[", fin=False), m(TEXT, b"1")], DROPPED),
    "binary-inside-fragmented": (CHAT_PATH, [m(TEXT, b"[", fin=False), m(BINARY, b"1")], DROPPED),
    "ping-126-bytes": (CHAT_PATH, [m(PING, b"p" * 126)], DROPPED),
    "fragmented-ping": (CHAT_PATH, [m(PING, b"p", fin=False)], DROPPED),
    "close-length-1": (CHAT_PATH, [m(CLOSE, b"\x03")], DROPPED),
    "close-code-999": (CHAT_PATH, [m(CLOSE, close_payload(999))], DROPPED),
    "close-code-1005": (CHAT_PATH, [m(CLOSE, close_payload(1005))], DROPPED),
    "close-code-1006": (CHAT_PATH, [m(CLOSE, close_payload(1006))], DROPPED),
    "close-code-5000": (CHAT_PATH, [m(CLOSE, close_payload(5000))], DROPPED),
    "close-invalid-utf8-reason": (CHAT_PATH, [m(CLOSE, close_payload(1000, b"\xff"))], DROPPED),
    "close-4000-answered-1000": (CHAT_PATH, [m(CLOSE, close_payload(4000, b"bye"))], 1000),
    "close-empty-answered-1000": (CHAT_PATH, [m(CLOSE, b"")], 1000),
    "non-minimal-16-bit-length": (CHAT_PATH, [m(TEXT, b"{}", length_form="16")], DROPPED),
    "non-minimal-64-bit-length": (CHAT_PATH, [m(TEXT, b"{}", length_form="64")], DROPPED),
    "length-over-2-63": (CHAT_PATH, [m(TEXT, b"", length=2**63, length_form="64")], DROPPED),
    "frame-over-daphne-1MiB": (CHAT_PATH, [m(TEXT, b'"' + b"a" * (1024 * 1024) + b'"')], DROPPED),
    "message-over-MAX_MESSAGE_SIZE": (CHAT_PATH, [m(TEXT, chat("a" * 70_000))], 1009),
    "fragments-over-MAX_MESSAGE_SIZE": (
        CHAT_PATH,
        [m(TEXT, b'"' + b"a" * 40_000, fin=False), m(CONT, b"a" * 40_000 + b'"')],
        1009,
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_frames(module: Module, name: str) -> None:
    path, frames, expected = CASES[name]
    ws = open_raw(module.server, path)
    if path == CHAT_PATH:
        joined(ws)
    ws.send_raw(b"".join(frames))
    ending = ws.read_until_closed(TIMEOUT)
    OBSERVED[f"{name}: {ending.close_code}"] += 1
    assert ending.close_code == expected, ending
    assert_server_healthy(module)


# All under MAX_MESSAGE_SIZE: they must not need the size limit to be refused.
JSON_BOMBS = {
    "deeply-nested-arrays": b"[" * 30_000 + b"]" * 30_000,
    "deeply-nested-objects": b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
    "integer-with-5000-digits": b'{"type":"message","content":' + b"9" * 5000 + b"}",
}


@pytest.mark.parametrize("name", list(JSON_BOMBS))
def test_json_bombs_close_with_1003_not_1011(module: Module, name: str) -> None:
    payload = JSON_BOMBS[name]
    ws = open_raw(module.server, CHAT_PATH)
    joined(ws)
    ws.send_frame(TEXT, payload)
    ending = ws.read_until_closed(TIMEOUT)
    OBSERVED[f"json-bomb {name}: {ending.close_code}"] += 1
    try:
        assert ending.close_code in {1003, 1009}, ending.close_code
    finally:
        assert_server_healthy(module)


def test_valid_odd_frames_keep_the_connection(module: Module) -> None:
    """Pings (answered in order), unsolicited pongs, fragments with pings between, empty fragments."""
    ws = open_raw(module.server, CHAT_PATH)
    joined(ws)
    token = new_token()
    body = chat(token)
    frames = [
        m(PONG, b"unsolicited"),
        m(PING, b""),
        m(PING, b"p" * 125),
        m(TEXT, body[:5], fin=False),
        m(PING, b"between"),
        m(CONT, b"", fin=False),
        m(CONT, body[5:20], fin=False),
        m(PONG, b"between"),
        m(CONT, body[20:]),
        m(TEXT, b'{"type":"not-a-message"}'),
        m(TEXT, b"[1e400, -1e400, 1e-400]"),
        m(TEXT, '{"type":"unicode","x":"\u00e9\U0001f600\\u0000"}'.encode()),
    ]
    ws.send_raw(b"".join(frames))
    module.saved_tokens.add(token)
    pongs: list[bytes] = []
    texts: list[str] = []
    while len([t for t in texts if '"type":"error"' in t]) < 3:
        frame = ws.read_frame(TIMEOUT)
        if frame.opcode == PONG:
            pongs.append(frame.payload)
        elif frame.opcode == TEXT:
            texts.append(frame.text)
        else:
            raise AssertionError(f"unexpected frame {frame}")
    assert pongs == [b"", b"p" * 125, b"between"]
    assert any(token in t for t in texts)
    assert ws.close().close_code == 1000
    OBSERVED["valid odd frames: 1000"] += 1
    assert_server_healthy(module)


def test_nan_does_not_reach_history(module: Module) -> None:
    """The Nexios document's room handler saves what it is sent: NaN must not get through as NaN."""
    room = f"nan-{uuid.uuid4().hex[:6]}"
    ws = open_raw(module.server, f"/seeds/room/{room}")
    ws.send_text('{"user": "u", "message": "before"}')
    wait_for(lambda: len(history(module.db, room)) >= 1, "a saved message", timeout=TIMEOUT)
    # Strict parsing: receive_json raises JSONDecodeError, which the document's
    # handler treats as fatal, so the socket ends here.
    ws.send_text('{"user": NaN, "message": Infinity}')
    ending = ws.read_until_closed(TIMEOUT)
    OBSERVED[f"seeds room NaN: {ending.close_code}"] += 1
    for _kind, text in history(module.db, room):
        strict_json(text or "")


def test_messages_received_before_a_close_are_all_handled(module: Module) -> None:
    """A client sends a non-chat message, a chat message and closes at once: the chat is saved."""
    ws = joined(open_raw(module.server, CHAT_PATH))
    token = new_token()
    module.maybe_tokens.add(token)
    ws.send_raw(m(TEXT, b"{}") + m(TEXT, chat(token)) + m(CLOSE, close_payload(1000)))
    assert ws.read_until_closed(TIMEOUT).close_code == 1000
    wait_for(
        lambda: any(token in (t or "") for _, t in history(module.db, ROOM)),
        "the chat message saved",
        timeout=3,
    )


# Generated sequences -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Step:
    """One generated action; ``frames()`` are its bytes on the wire."""

    kind: str
    data: bytes = b""
    n: int = 0
    token: bool = False

    def frames(self, content: str | None) -> list[bytes]:
        body = chat(content) if content is not None else self.data
        if self.kind in {"chat", "json", "badjson"}:
            return fragment(TEXT, body, self.n, pings=self.token)
        k = self.kind
        if k == "binary":
            return [m(BINARY, self.data)]
        if k == "badutf8":
            return fragment(TEXT, self.data, self.n, pings=False)
        if k == "ping":
            return [m(PING, self.data)]
        if k == "pong":
            return [m(PONG, self.data)]
        if k == "bigping":
            return [m(PING, self.data)]
        if k == "fragping":
            return [m(PING, self.data, fin=False)]
        if k == "opcode":
            return [m(self.n, self.data)]
        if k == "rsv":
            return [m(TEXT, b"{}", rsv=self.n)]
        if k == "unmasked":
            return [m(TEXT, b"{}", masked=False)]
        if k == "orphan":
            return [m(CONT, self.data)]
        if k == "interleave":
            return [m(TEXT, b"[", fin=False), m(self.n, b"1")]
        if k == "nonminimal":
            return [m(TEXT, b"{}", length_form="16")]
        if k in {"close", "badclose"}:
            return [m(CLOSE, self.data)]
        raise AssertionError(k)


def chunks_of(body: bytes, pieces: int) -> list[bytes]:
    """``body`` cut into at most ``pieces`` non-empty chunks (one empty chunk for an empty body)."""
    if not body:
        return [b""]
    size = -(-len(body) // max(1, pieces))
    return [body[i : i + size] for i in range(0, len(body), size)]


def fragment(opcode: int, body: bytes, pieces: int, *, pings: bool) -> list[bytes]:
    """``body`` as one message of up to ``pieces`` frames (a ping between each two if asked)."""
    chunks = chunks_of(body, pieces)
    frames = []
    for i, chunk in enumerate(chunks):
        frames.append(m(opcode if i == 0 else CONT, chunk, fin=i == len(chunks) - 1))
        if pings and i < len(chunks) - 1:
            frames.append(m(PING, b"mid"))
    return frames


def not_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return True
    return False


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)  # strict JSON refuses both
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
non_chat_json = json_values.filter(lambda v: not (isinstance(v, dict) and v.get("type") == "message"))
invalid_utf8 = st.builds(
    lambda prefix, bad, suffix: prefix.encode() + bad + suffix.encode(),
    st.text(max_size=10),
    st.sampled_from([*INVALID_UTF8[:4], b"\x80", b"\xf8\x88\x80\x80\x80", b"\xe0\x80\xaf"]),
    st.text(max_size=10),
)
valid_close_codes = st.sampled_from([1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4000, 4999])
invalid_close_payloads = st.one_of(
    st.just(b"\x03"),
    st.sampled_from([0, 999, 1004, 1005, 1006, 1015, 2000, 2999, 5000, 65535]).map(close_payload),
    st.just(close_payload(1000, b"\xff\xfe")),
)
pieces = st.integers(min_value=1, max_value=4)
control_payload = st.binary(max_size=125)

# Frames the connection survives, frames the endpoint refuses (1003), and protocol errors.
harmless_steps = st.one_of(
    st.builds(Step, st.just("chat"), st.just(b""), pieces, st.booleans()),
    st.builds(
        Step, st.just("json"), non_chat_json.map(lambda v: json.dumps(v).encode()), pieces, st.booleans()
    ),
    st.builds(Step, st.just("ping"), control_payload),
    st.builds(Step, st.just("pong"), control_payload),
)
unfit_steps = st.one_of(
    st.builds(Step, st.just("badjson"), st.text(max_size=30).filter(not_json).map(str.encode), pieces),
    st.builds(Step, st.just("binary"), st.binary(max_size=64)),
)
fatal_steps = st.one_of(
    st.builds(Step, st.just("badutf8"), invalid_utf8, pieces),
    st.builds(Step, st.just("bigping"), st.binary(min_size=126, max_size=200)),
    st.builds(Step, st.just("fragping"), control_payload),
    st.builds(
        Step, st.just("opcode"), st.binary(max_size=8), st.sampled_from([3, 4, 5, 6, 7, 11, 12, 13, 14, 15])
    ),
    st.builds(Step, st.just("rsv"), st.just(b""), st.integers(min_value=1, max_value=7)),
    st.builds(Step, st.just("unmasked")),
    st.builds(Step, st.just("orphan"), st.binary(max_size=8)),
    st.builds(Step, st.just("interleave"), st.just(b""), st.sampled_from([TEXT, BINARY])),
    st.builds(Step, st.just("nonminimal")),
    st.builds(
        Step,
        st.just("close"),
        st.builds(close_payload, valid_close_codes, st.text(max_size=20).map(str.encode)),
    ),
    st.builds(Step, st.just("badclose"), invalid_close_payloads),
)
# Weighted 4:1:1 (one_of would flatten the three and weight every branch alike).
steps = st.sampled_from([harmless_steps] * 4 + [unfit_steps, fatal_steps]).flatmap(lambda kind: kind)

PROTOCOL_ERRORS = {
    "badutf8", "bigping", "fragping", "opcode", "rsv",
    "unmasked", "orphan", "interleave", "nonminimal", "badclose",
}  # fmt: skip


@dataclasses.dataclass
class Expectation:
    frames: bytes
    codes: set[int | None]  # acceptable close codes; empty: the connection stays open
    saved: list[str]  # chat contents the application stores
    maybe: list[str]  # ... or may lose, for the known bug
    errors: int  # error replies to non-chat JSON
    pings: list[bytes]


def expect(sequence: list[Step]) -> Expectation:
    """What daphne and the chat endpoint do with this sequence (the model of the test)."""
    wire: list[bytes] = []
    app_messages: list[tuple[str, str | None]] = []  # ("chat", token) / ("json", None) / ("unfit", None)
    transport_end: int | str | None = "open"
    pings: list[bytes] = []
    for step in sequence:
        content = new_token() if step.kind == "chat" else None
        wire += step.frames(content)
        body = chat(content) if content is not None else step.data
        if step.kind in PROTOCOL_ERRORS:
            transport_end = DROPPED
            break
        if step.kind == "close":
            transport_end = 1000
            break
        if step.kind == "ping":
            pings.append(step.data)
        if step.token and step.kind in {"chat", "json", "badjson"}:
            pings += [b"mid"] * (len(chunks_of(body, step.n)) - 1)
        if step.kind == "chat":
            app_messages.append(("chat", content))
        elif step.kind == "json":
            app_messages.append(("json", None))
        elif step.kind in {"badjson", "binary"}:
            app_messages.append(("unfit", None))
    saved: list[str] = []
    maybe: list[str] = []
    errors = 0
    app_close: int | None = None
    for kind, content in app_messages:
        if kind == "unfit":
            app_close = 1003
            break
        if kind == "chat":
            assert content is not None
            # Every chat message received before the end is handled, even when the
            # endpoint's error replies can no longer be written (the client is gone).
            saved.append(content)
        else:
            errors += 1
    codes: set[int | None]
    if transport_end == "open":
        codes = {app_close} if app_close is not None else set()
    else:
        # The endpoint's own close can win the race with daphne's reaction to a later frame.
        codes = {typing.cast(int | None, transport_end)} | ({app_close} if app_close is not None else set())
    FRAMES_SENT["generated"] += len(wire)
    return Expectation(b"".join(wire), codes, saved, maybe, errors, pings)


@settings(
    max_examples=500,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(sequence=st.lists(steps, min_size=1, max_size=8))
def test_generated_frame_sequences(module: Module, sequence: list[Step]) -> None:
    expected = expect(sequence)
    module.examples.append(f"{[step.kind for step in sequence]} saving {expected.saved}: {expected.frames!r}")
    ws = open_raw(module.server, CHAT_PATH)
    try:
        joined(ws)
        ws.send_raw(expected.frames)
        module.saved_tokens.update(expected.saved)
        module.maybe_tokens.update(expected.maybe)
        if expected.codes:
            ending = ws.read_until_closed(TIMEOUT)
            OBSERVED[f"generated, expected {sorted(expected.codes, key=str)}: got {ending.close_code}"] += 1
            assert ending.close_code in expected.codes, (ending, expected)
            return
        # Still open: every ping was answered, every non-chat JSON got an error, and a probe works.
        ws.send_text('{"type": "probe"}')
        pongs: list[bytes] = []
        errors = 0
        while errors < expected.errors + 1:
            frame = ws.read_frame(TIMEOUT)
            if frame.opcode == PONG:
                pongs.append(frame.payload)
            elif frame.opcode == TEXT and json.loads(frame.text).get("type") == "error":
                errors += 1
            elif frame.opcode == CLOSE:
                raise AssertionError(f"closed with {frame.close_code}; expected open ({expected})")
        assert pongs == expected.pings
        ending = ws.close()
        OBSERVED[f"generated, stays open: closing handshake got {ending.close_code}"] += 1
        assert ending.close_code == 1000
    finally:
        ws.sock.close()


def test_zz_server_still_healthy(module: Module) -> None:
    """After everything above: a fresh connection works and the bystander still receives."""
    assert_server_healthy(module)
    assert module.server.running
