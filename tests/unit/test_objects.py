"""Nexios's connection objects: query parameters, headers, URL, state, and lazy scope parsing."""

from __future__ import annotations

import typing

import pytest

from nexios_compat.objects import QueryParams
from nexios_compat.websockets.base import WebSocket


async def _never() -> typing.Any:
    raise AssertionError("not used")


async def _discard(message: typing.Any) -> None:
    raise AssertionError("not used")


def socket(**scope: typing.Any) -> WebSocket:
    return WebSocket({"type": "websocket", "path": "/ws", **scope}, _never, _discard)


@pytest.mark.parametrize("query", [b"name=test&tag=a&tag=b", "name=test&tag=a&tag=b"])
def test_query_params_have_nexios_semantics_for_bytes_and_str(query: str | bytes) -> None:
    ws = socket(query_string=query)
    assert dict(ws.query_params) == {"name": "test", "tag": "b"}
    assert ws.query_params.getlist("tag") == ["a", "b"]
    assert ws.query_params["name"] == "test"
    assert ws.query_params.get("missing", "x") == "x"
    assert ws.query_params() == {"name": "test", "tag": "b"}
    assert ws.scope["query_params"].get("name") == "test"  # the documents read it from the scope
    assert str(ws.query_params) == "name=test&tag=a&tag=b"


def test_blank_values_are_kept_and_equality_ignores_order() -> None:
    assert dict(QueryParams(b"a=&b=2")) == {"a": "", "b": "2"}
    assert QueryParams("a=1&b=2") == QueryParams([("b", "2"), ("a", "1")])
    assert QueryParams("a=1") == {"a": "1"}


def test_a_scope_is_parsed_only_when_read() -> None:
    # Undecodable as a query string only when someone asks for the parameters.
    ws = socket(query_string=12345)
    with pytest.raises(TypeError):
        ws.query_params.get("x")


def test_minimal_scope_and_nexios_route_params() -> None:
    ws = WebSocket({"type": "websocket", "route_params": {"room": "r1"}}, _never, _discard)
    assert ws.path_params == {"room": "r1"}
    assert dict(ws.query_params) == {}
    assert ws.url == ""


def test_headers_are_case_insensitive_and_keep_repeats() -> None:
    ws = socket(headers=[(b"X-Tag", b"a"), (b"x-tag", b"b"), (b"host", b"example.org:8000")])
    assert ws.headers["X-TAG"] == "a,b"
    assert ws.headers.get("x-Tag") == "a,b"
    assert "X-Tag" in ws.headers
    assert ws.headers.getlist("x-tag") == ["a", "b"]


def test_url_path_cookies_state_and_scope_access() -> None:
    ws = socket(
        scheme="wss",
        query_string=b"a=1",
        headers=[(b"host", b"example.org:8443"), (b"cookie", b"sid=abc; theme=dark")],
        client=("10.0.0.1", 5000),
    )
    assert ws.url == "wss://example.org:8443/ws?a=1"
    assert (ws.url.path, ws.url.query, ws.url.hostname, ws.url.port) == ("/ws", "a=1", "example.org", 8443)
    assert ws.url.is_secure
    assert ws.path == "/ws"
    assert ws["path"] == "/ws"
    assert ws.cookies == {"sid": "abc", "theme": "dark"}
    assert (ws.client.host, ws.client.port) == ("10.0.0.1", 5000)
    ws.state.user = "ada"
    assert ws.state.user == "ada"
    assert ws.state.missing is None
    assert ws.scope["state"] == {"user": "ada"}


def test_url_from_the_server_address_without_a_host_header() -> None:
    ws = socket(scheme="ws", server=("127.0.0.1", 80))
    assert ws.url == "ws://127.0.0.1/ws"
    ws = socket(scheme="ws", server=("127.0.0.1", 9000))
    assert ws.url.port == 9000
