"""Server-Sent Events clients for tests: an ASGI call of a view, and a raw HTTP/1.1 stream to daphne."""

from __future__ import annotations

import asyncio
import contextlib
import json
import typing
from collections.abc import AsyncIterator


class Event(typing.NamedTuple):
    """One event: its ``id`` (None when the event set none), ``event`` name and ``data``."""

    id: str | None
    event: str
    data: str

    def json(self) -> typing.Any:
        """The data parsed as JSON."""
        return json.loads(self.data)


class EventParser:
    """Turns the bytes of an event stream into events (comments and ``retry:`` are dropped)."""

    def __init__(self) -> None:
        self._buffer = b""
        self.comments = 0

    def feed(self, chunk: bytes) -> list[Event]:
        """Add bytes; return the events they completed."""
        self._buffer += chunk
        events = []
        while b"\n\n" in self._buffer:
            block, self._buffer = self._buffer.split(b"\n\n", 1)
            fields: dict[str, list[str]] = {}
            for line in block.decode("utf-8").split("\n"):
                if line.startswith(":"):
                    self.comments += 1
                    continue
                name, _, value = line.partition(": ")
                fields.setdefault(name, []).append(value)
            if "data" in fields:
                events.append(
                    Event(
                        fields.get("id", [None])[-1],
                        fields.get("event", ["message"])[-1],
                        "\n".join(fields["data"]),
                    )
                )
        return events


class Stream:
    """An open event stream: ``await next_event()`` until it ends."""

    def __init__(self, status: int, headers: dict[str, str], chunks: asyncio.Queue[bytes | None]) -> None:
        self.status = status
        self.headers = headers
        self._chunks = chunks
        self._parser = EventParser()
        self._events: list[Event] = []
        self.ended = False

    @property
    def comments(self) -> int:
        """Comment lines (keep-alives) read so far."""
        return self._parser.comments

    async def next_event(self, timeout: float = 10) -> Event | None:
        """The next event, or None when the stream ended first."""
        async with asyncio.timeout(timeout):
            while not self._events:
                chunk = await self._chunks.get()
                if chunk is None:
                    self.ended = True
                    return None
                self._events.extend(self._parser.feed(chunk))
            return self._events.pop(0)

    async def events_until(
        self, predicate: typing.Callable[[Event], bool], timeout: float = 10
    ) -> list[Event]:
        """Events up to and including the first one ``predicate`` accepts."""
        seen: list[Event] = []
        async with asyncio.timeout(timeout):
            while True:
                found = await self.next_event(timeout)
                assert found is not None, f"stream ended; saw {seen}"
                seen.append(found)
                if predicate(found):
                    return seen

    async def wait_comment(self, timeout: float = 10) -> None:
        """Wait for the next comment (a keep-alive)."""
        start = self.comments
        async with asyncio.timeout(timeout):
            while self.comments == start:
                chunk = await self._chunks.get()
                if chunk is None:
                    raise AssertionError("stream ended")
                self._events.extend(self._parser.feed(chunk))


@contextlib.asynccontextmanager
async def asgi_stream(
    app: typing.Any, path: str, headers: dict[str, str] | None = None, query: str = ""
) -> AsyncIterator[Stream]:
    """GET ``path`` from an ASGI app; leaving the block disconnects the client (and awaits the app)."""
    received: asyncio.Queue[dict[str, typing.Any]] = asyncio.Queue()
    chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
    started: asyncio.Future[tuple[int, dict[str, str]]] = asyncio.get_running_loop().create_future()
    await received.put({"type": "http.request", "body": b"", "more_body": False})
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }

    async def send(message: dict[str, typing.Any]) -> None:
        if message["type"] == "http.response.start":
            started.set_result(
                (message["status"], {k.decode().lower(): v.decode() for k, v in message["headers"]})
            )
        elif message["type"] == "http.response.body":
            await chunks.put(message.get("body", b""))
            if not message.get("more_body"):
                await chunks.put(None)

    task = asyncio.ensure_future(app(scope, received.get, send))
    try:
        status, response_headers = await asyncio.wait_for(asyncio.shield(started), 10)
        yield Stream(status, response_headers, chunks)
    finally:
        await received.put({"type": "http.disconnect"})
        await asyncio.wait_for(task, 10)


@contextlib.asynccontextmanager
async def http_stream(
    host: str, port: int, path: str, headers: dict[str, str] | None = None
) -> AsyncIterator[Stream]:
    """GET ``path`` over a raw HTTP/1.1 connection (chunked); leaving the block closes it."""
    reader, writer = await asyncio.open_connection(host, port)
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Accept: text/event-stream"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
    try:
        status_line = await reader.readline()
        status = int(status_line.split()[1])
        response_headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            response_headers[name.strip().lower()] = value.strip()
        chunked = response_headers.get("transfer-encoding", "").lower() == "chunked"
        pump = asyncio.ensure_future(_pump(reader, chunks, chunked))
        try:
            yield Stream(status, response_headers, chunks)
        finally:
            pump.cancel()
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def _pump(reader: asyncio.StreamReader, chunks: asyncio.Queue[bytes | None], chunked: bool) -> None:
    try:
        while True:
            if chunked:
                size_line = await reader.readline()
                if not size_line:
                    break
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    break
                data = await reader.readexactly(size)
                await reader.readexactly(2)
            else:
                data = await reader.read(65536)
                if not data:
                    break
            await chunks.put(data)
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    await chunks.put(None)


async def post_json(
    host: str, port: int, path: str, body: typing.Any, headers: dict[str, str] | None = None
) -> tuple[int, typing.Any]:
    """POST a JSON body over a raw HTTP/1.1 connection; return the status and the answer (JSON parsed)."""
    reader, writer = await asyncio.open_connection(host, port)
    data = json.dumps(body).encode()
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(data)}",
        "Connection: close",
    ]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + data)
    raw = await reader.read()
    writer.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    if b"transfer-encoding: chunked" in head.lower():
        payload = _unchunk(payload)
    try:
        return status, json.loads(payload) if payload else None
    except ValueError:
        return status, payload.decode("utf-8", "replace")  # Django's HTML pages (CSRF failure, 404)


def _unchunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line or b"0", 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2 :]
    return out
