"""Mirrors ``nexios.objects`` for WebSockets: ``QueryParams``, ``Headers``, ``URL``, ``Address``.

Each is built from the ASGI scope and parsed only when first read, so a
``WebSocket`` never fails at construction over an unusual scope (a ``str``
``query_string``, as Nexios's own tests build them).
"""

from __future__ import annotations

import typing
from collections.abc import Iterator, Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit

__all__ = ["URL", "Address", "Headers", "QueryParams", "State"]


def _text(raw: str | bytes | None) -> str:
    """Decode a scope value that servers send as bytes (and hand-built scopes as ``str``)."""
    if raw is None:
        return ""
    return raw.decode("latin-1") if isinstance(raw, bytes | bytearray) else str(raw)


class Address(typing.NamedTuple):
    """The client's address, as ``ws.client.host`` and ``ws.client.port``."""

    host: str
    port: int


class QueryParams(Mapping[str, str]):
    """Query-string parameters: ``qp["k"]`` and ``dict(qp)`` give the last value, ``getlist`` all.

    Nexios's semantics (an immutable multi-dict), not Django's ``QueryDict``
    (whose ``dict()`` gives lists). Parsed on first access.
    """

    def __init__(self, query: str | bytes | Mapping[str, str] | list[tuple[str, str]] | None = None) -> None:
        self._raw = query
        self._items: list[tuple[str, str]] | None = None
        self._last: dict[str, str] = {}

    def _parse(self) -> list[tuple[str, str]]:
        if self._items is None:
            raw = self._raw
            if raw is None or isinstance(raw, str | bytes | bytearray):
                items = parse_qsl(_text(raw), keep_blank_values=True)
            elif isinstance(raw, Mapping):
                items = list(raw.items())
            else:
                items = list(raw)
            self._items = [(str(k), str(v)) for k, v in items]
            self._last = dict(self._items)
        return self._items

    def __getitem__(self, key: str) -> str:
        self._parse()
        return self._last[key]

    def __iter__(self) -> Iterator[str]:
        self._parse()
        return iter(self._last)

    def __len__(self) -> int:
        self._parse()
        return len(self._last)

    def getlist(self, key: str) -> list[str]:
        """Return every value of ``key``, in order (``[]`` when absent)."""
        return [v for k, v in self._parse() if k == key]

    def multi_items(self) -> list[tuple[str, str]]:
        """Return every ``(key, value)`` pair, repeated keys included."""
        return list(self._parse())

    def __call__(self) -> dict[str, str]:
        """Return the parameters as a plain dict (Nexios's ``request.query_params()``)."""
        self._parse()
        return dict(self._last)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, QueryParams):
            return sorted(self.multi_items()) == sorted(other.multi_items())
        return isinstance(other, Mapping) and dict(self.items()) == dict(other.items())

    __hash__ = None  # type: ignore[assignment]

    def __str__(self) -> str:
        return urlencode(self._parse())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class Headers(dict[str, str]):
    """Request headers: names are case-insensitive; repeated headers are joined by commas.

    ``getlist`` returns a repeated header's values one by one.
    """

    _raw: list[tuple[str, str]]

    @classmethod
    def from_scope(cls, scope: typing.MutableMapping[str, typing.Any]) -> Headers:
        """Build the mapping from the scope's byte pairs."""
        headers = cls()
        headers._raw = []
        for raw_name, raw_value in scope.get("headers", []):
            name, value = _text(raw_name).lower(), _text(raw_value)
            headers._raw.append((name, value))
            dict.__setitem__(headers, name, f"{headers[name]},{value}" if name in headers else value)
        return headers

    def __getitem__(self, key: str) -> str:
        return dict.__getitem__(self, key.lower())

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, key.lower() if isinstance(key, str) else key)

    def get(self, key: str, default: typing.Any = None) -> typing.Any:
        """Return a header's value, or ``default``."""
        return dict.get(self, key.lower(), default)

    def getlist(self, key: str) -> list[str]:
        """Return every value sent for a header, in order."""
        name = key.lower()
        return [v for k, v in getattr(self, "_raw", []) if k == name]


class URL(str):
    """The connection's full URL (``ws://host/path?query``) with its parts as attributes."""

    @classmethod
    def from_scope(cls, scope: typing.MutableMapping[str, typing.Any]) -> URL:
        """Build the URL the client connected to from the scope (Host header first)."""
        scheme = scope.get("scheme") or "ws"
        path = scope.get("root_path", "") + scope.get("path", "")
        query = _text(scope.get("query_string"))
        host = ""
        for raw_name, raw_value in scope.get("headers", []):
            if _text(raw_name).lower() == "host":
                host = _text(raw_value)
                break
        if not host and scope.get("server"):
            server_host, port = scope["server"][0], scope["server"][1]
            default = {"ws": 80, "wss": 443, "http": 80, "https": 443}.get(scheme)
            host = server_host if port in (default, None) else f"{server_host}:{port}"
        url = f"{scheme}://{host}{path}" if host else path
        return cls(url + (f"?{query}" if query else ""))

    @property
    def _parts(self) -> typing.Any:
        return urlsplit(str(self))

    @property
    def scheme(self) -> str:
        """``ws`` or ``wss`` (as the server reports it)."""
        return str(self._parts.scheme)

    @property
    def netloc(self) -> str:
        """Host and port, as the client sent them."""
        return str(self._parts.netloc)

    @property
    def hostname(self) -> str | None:
        """The host name, without the port."""
        return typing.cast(str | None, self._parts.hostname)

    @property
    def port(self) -> int | None:
        """The port, when the URL names one."""
        return typing.cast(int | None, self._parts.port)

    @property
    def path(self) -> str:
        """The path, without the query string."""
        return str(self._parts.path)

    @property
    def query(self) -> str:
        """The query string, without the ``?``."""
        return str(self._parts.query)

    @property
    def is_secure(self) -> bool:
        """Whether the connection is over TLS."""
        return self.scheme in {"wss", "https"}


class State:
    """Attribute access over a dict (``ws.state.user = ...``); a missing name reads as ``None``."""

    _state: dict[str, typing.Any]

    def __init__(self, state: dict[str, typing.Any] | None = None) -> None:
        object.__setattr__(self, "_state", {} if state is None else state)

    def __setattr__(self, key: str, value: typing.Any) -> None:
        self._state[key] = value

    def __getattr__(self, key: str) -> typing.Any:
        return self._state.get(key)

    def __delattr__(self, key: str) -> None:
        del self._state[key]

    def update(self, values: Mapping[str, typing.Any]) -> None:
        """Set several names at once."""
        self._state.update(values)

    def __repr__(self) -> str:
        return f"<State data={self._state}>"
