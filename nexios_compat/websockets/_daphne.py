"""What the WebSocket knows of the server under it: daphne's protocol and send buffer, arrival times.

daphne hides the parts we need behind ASGI (close codes it refuses, the bytes a
slow client has not taken, the moment a frame arrived); these helpers reach
them, and do nothing under any other server.
"""

from __future__ import annotations

import asyncio
import collections
import time
import typing

from ._asgi import Message, Receive, Send

# Close codes an endpoint may send (RFC 6455 section 7.4; 1004-1006 and 1015 are reserved).
SENDABLE_CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})


def unwrap_session_send(send: Send) -> Send:
    """Return the server's ``send`` under Channels' session middleware wrappers.

    ``InstanceSessionWrapper.send`` only acts on ``websocket.accept`` and HTTP
    responses (to save the session), yet it reads the lazy session object on
    every frame: a tenth of the cost of a broadcast. Frames skip it.
    """
    for _ in range(8):
        inner = getattr(getattr(send, "__self__", None), "real_send", None)
        if inner is None:
            break
        send = inner
    return send


def daphne_close(send: Send, code: int, reason: str | None) -> bool:
    """Under daphne, send the close frame through its protocol; return whether it was handled.

    daphne (autobahn's ``sendClose``) refuses application close codes other than
    1000 and 3000-4999: the ASGI ``websocket.close`` send raises and the socket
    stays open (daphne issue 374); it also drops the reason. daphne passes
    ``partial(Server.handle_reply, protocol)`` as ``send``, and the protocol's
    ``sendCloseFrame`` sends any valid code with its reason, as daphne itself
    does with 1011 when an application crashes.
    """
    send = unwrap_session_send(send)
    func = getattr(send, "func", None)
    args = getattr(send, "args", ())
    if (
        not args
        or getattr(func, "__qualname__", "") != "Server.handle_reply"
        or getattr(func, "__module__", "") != "daphne.server"
        or not (code in SENDABLE_CLOSE_CODES or 3000 <= code <= 4999)
    ):
        return False
    protocol, server = args[0], getattr(func, "__self__", None)
    details = getattr(server, "connections", {}).get(protocol)
    if not details or details.get("disconnected"):
        return True  # daphne would ignore the message too: the client is gone
    if getattr(protocol, "state", None) != getattr(protocol, "STATE_OPEN", object()):
        return protocol.state in (protocol.STATE_CLOSING, protocol.STATE_CLOSED)
    raw = (reason or "").encode("utf-8")[:123].decode("utf-8", "ignore").encode("utf-8")
    protocol.sendCloseFrame(code=code, reasonUtf8=raw or None)
    return True


def daphne_protocol(send: Send) -> typing.Any | None:
    """The daphne (autobahn) protocol behind ``send``, or ``None`` under another server."""
    send = unwrap_session_send(send)
    func = getattr(send, "func", None)
    args = getattr(send, "args", ())
    if (
        args
        and getattr(func, "__qualname__", "") == "Server.handle_reply"
        and getattr(func, "__module__", "") == "daphne.server"
    ):
        return args[0]
    return None


def daphne_connection(send: Send, protocol: typing.Any) -> dict[str, typing.Any] | None:
    """daphne's record of the connection behind ``send`` (``"disconnected"`` appears when it ends)."""
    func = getattr(unwrap_session_send(send), "func", None)
    details = getattr(getattr(func, "__self__", None), "connections", {}).get(protocol)
    return details if isinstance(details, dict) else None


def prepared_transport(protocol: typing.Any) -> tuple[typing.Any, int] | None:
    """The transport an accepted socket's prepared broadcast frames can be written to, and their size limit.

    autobahn's ``sendPreparedMessage`` writes bytes framed once to every protocol;
    without its per-frame debug logging, and by the same rule (``sendData``), this
    writes them to ``protocol.transport``. Not when the connection negotiated
    permessage-deflate (each frame is compressed in the connection's own context),
    logs frames or octets, or tracks timings: those sockets keep the ASGI path.
    Frames over the limit (``maxMessagePayloadSize``, ``autoFragmentSize``) take it too.
    """
    if protocol is None or getattr(protocol, "state", None) != getattr(protocol, "STATE_OPEN", object()):
        return None
    if (
        getattr(protocol, "_perMessageCompress", True) is not None
        or getattr(protocol, "logFrames", True)
        or getattr(protocol, "logOctets", True)
        or getattr(protocol, "trackedTimings", True)
        or not hasattr(protocol, "send_queue")
    ):
        return None
    transport = getattr(protocol, "transport", None)
    if transport is None or not hasattr(transport, "write"):
        return None
    limits = [
        int(value)
        for value in (getattr(protocol, "maxMessagePayloadSize", 0), getattr(protocol, "autoFragmentSize", 0))
        if value and value > 0
    ]
    return transport, (min(limits) if limits else 1 << 62)


def send_buffer(protocol: typing.Any) -> typing.Any | None:
    """The Twisted TCP transport whose user-space buffer holds what the client has not taken yet.

    ``dataBuffer[offset:]`` plus ``_tempDataLen`` bytes (twisted.internet.abstract.FileDescriptor)
    are written but not yet accepted by the kernel: they grow without bound while the client
    does not read. Under TLS the protocol's transport wraps the TCP one.
    """
    transport = getattr(protocol, "transport", None)
    for _ in range(4):
        if transport is None or hasattr(transport, "_tempDataLen"):
            break
        transport = getattr(transport, "transport", None)
    if transport is None or not all(hasattr(transport, a) for a in ("dataBuffer", "offset", "_tempDataLen")):
        return None
    return transport


# The key under which a frame carries the time (``time.monotonic()``) the server queued it.
ARRIVED = "nexios_compat.arrived"


def receive_queue(receive: Receive) -> asyncio.Queue[Message] | None:
    """The queue behind ``receive`` when it is ``Queue.get`` (daphne, and Channels' test communicator)."""
    queue = getattr(receive, "__self__", None)
    return queue if isinstance(queue, asyncio.Queue) else None


class _StampedPut:
    """``Queue.put_nowait`` that stamps ``websocket.receive`` frames (slotted: no closure, no dict)."""

    __slots__ = ("admit", "put", "queue")

    def __init__(self, queue: asyncio.Queue[Message], admit: typing.Any) -> None:
        self.queue = queue
        self.put = queue.put_nowait
        self.admit = admit

    def __call__(self, message: Message) -> None:
        """Stamp, judge and queue one message from the server."""
        if message.get("type") == "websocket.receive":
            message[ARRIVED] = time.monotonic()
            admit = self.admit
            if admit is not None:
                admitted = admit(message, self.queue.qsize())
                if admitted is None:
                    return
                message = admitted
        self.put(message)


def stamp_arrivals(
    queue: asyncio.Queue[Message], admit: typing.Callable[[Message, int], Message | None] | None = None
) -> None:
    """Have every frame put on ``queue`` carry the time it arrived (under ``ARRIVED``).

    The server puts frames on the queue as they come off the network; the
    handler may take them much later (a stalled database, a slow handler).
    ``admit`` judges each frame then (given how many wait already) and returns
    what to queue instead, or ``None`` to hold nothing.
    """
    if isinstance(queue.put_nowait, _StampedPut):
        return
    queue.put_nowait = _StampedPut(queue, admit)  # type: ignore[method-assign,assignment]


# Past this many items a ShortDeque is a deque again: popleft on a list is a shift.
_SHORT = 8


class ShortDeque:
    """The few items of a receive queue's frames or waiting readers: a list, a deque only while long.

    An empty ``collections.deque`` is 760 bytes (its first block of 64 slots); an idle
    receive queue has no frame and one waiting reader, and keeps two deques for them.
    This is what ``asyncio.Queue`` asks of both: append, popleft, remove, len, iteration.
    """

    __slots__ = ("_items",)

    def __init__(self, items: typing.Iterable[typing.Any] = ()) -> None:
        self._items: list[typing.Any] | collections.deque[typing.Any] = list(items)

    def append(self, item: typing.Any) -> None:
        """Add ``item`` at the end."""
        items = self._items
        items.append(item)
        if type(items) is list and len(items) > _SHORT:
            self._items = collections.deque(items)

    def popleft(self) -> typing.Any:
        """Remove and return the first item (``IndexError`` when empty)."""
        items = self._items
        if isinstance(items, list):
            return items.pop(0)
        item = items.popleft()
        if not items:  # a burst is over: back to the small form
            self._items = []
        return item

    def remove(self, item: typing.Any) -> None:
        """Remove the first occurrence of ``item`` (``ValueError`` when absent)."""
        self._items.remove(item)

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> typing.Iterator[typing.Any]:
        return iter(self._items)

    def __repr__(self) -> str:
        return f"ShortDeque({list(self._items)!r})"


# What an unbounded receive queue never uses, shared by all of them (see ``trim_queue``).
_NO_PUTTERS: collections.deque[typing.Any] = collections.deque()
_NOT_JOINED = asyncio.Event()


def trim_queue(queue: asyncio.Queue[typing.Any]) -> None:
    """Share the parts of an unbounded ``asyncio.Queue`` nobody uses, and shrink the two it uses.

    daphne gives every connection a queue of its own; half of what it holds
    (about 1.6 KiB: the deque of putters waiting for room, and the event
    ``join()`` waits on, with its deque) only matters to a bounded queue or to
    ``join()``, which nothing calls on a receive queue. Both stay empty when shared:
    ``put`` never waits on an unbounded queue, and ``task_done`` is never called.
    Its frames and its waiting readers, a deque each (1.5 KiB), are each a ``ShortDeque``.
    """
    if (
        type(queue) is not asyncio.Queue  # a PriorityQueue or LifoQueue keeps a list of its own
        or queue.maxsize > 0
        or getattr(queue, "_putters", None) is None
        or queue._putters  # type: ignore[attr-defined]
        or not isinstance(getattr(queue, "_finished", None), asyncio.Event)
        or queue._finished._waiters  # type: ignore[attr-defined]
    ):
        return
    queue._putters = _NO_PUTTERS  # type: ignore[attr-defined]
    queue._finished = _NOT_JOINED  # type: ignore[attr-defined]
    for name in ("_queue", "_getters"):
        if type(getattr(queue, name, None)) is collections.deque:
            setattr(queue, name, ShortDeque(getattr(queue, name)))


def client_gone(send: Send, queue: asyncio.Queue[Message] | None) -> bool:
    """Whether the client gave up before the handshake was answered (daphne, or a queued disconnect)."""
    protocol = daphne_protocol(send)
    if protocol is not None:
        func = unwrap_session_send(send)
        server = getattr(getattr(func, "func", None), "__self__", None)
        details = getattr(server, "connections", {}).get(protocol)
        if details is None or details.get("disconnected"):
            return True
    # asyncio.Queue keeps its items in ``_queue``: look, without taking any.
    pending = getattr(queue, "_queue", ()) if queue is not None else ()
    return any(message.get("type") == "websocket.disconnect" for message in pending)
