"""Tests of the real-service test infrastructure itself (devservers/)."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from devservers import (
    PostgresServer,
    RedisServer,
    ServerError,
    free_port,
    postgres_available,
    redis_available,
    wait_for_port,
)
from tests.support.fixtures import require_service


def _gone(pid: int | None) -> bool:
    """True once ``pid`` is reaped or a zombie (i.e. no longer running)."""
    assert pid is not None
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in {"Z", "X"}


# ---------------------------------------------------------------- helpers


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 0 < port < 65536
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_wait_for_port_returns_when_listening() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        wait_for_port("127.0.0.1", sock.getsockname()[1], timeout=5)


def test_wait_for_port_times_out() -> None:
    with pytest.raises(TimeoutError, match="not accepting connections"):
        wait_for_port("127.0.0.1", free_port(), timeout=0.3)


def test_wait_for_port_reports_exited_process_output() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; print('boom-marker'); sys.exit(3)"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        with pytest.raises(ServerError, match=r"(?s)code 3.*boom-marker"):
            wait_for_port("127.0.0.1", free_port(), timeout=30, proc=proc)
    finally:
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def test_require_service(monkeypatch: pytest.MonkeyPatch) -> None:
    require_service("anything", True)  # no-op
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="frobd is required in CI"):
        require_service("frobd", False)
    monkeypatch.setenv("CI", "")
    with pytest.raises(pytest.skip.Exception):
        require_service("frobd", False)
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        require_service("frobd", False)


# ---------------------------------------------------------------- redis


def test_redis_fixture_answers_ping(redis_server: RedisServer) -> None:
    import redis

    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    client = redis.Redis.from_url(redis_server.url)
    try:
        assert client.ping() is True
        client.set("k", "v")
        assert client.get("k") == b"v"
    finally:
        client.close()


def test_redis_restart_keeps_port_and_drops_data(redis_server: RedisServer) -> None:
    import redis

    port, old_pid = redis_server.port, redis_server.pid
    client = redis.Redis.from_url(redis_server.url)
    try:
        client.set("survives", "no")
    finally:
        client.close()

    redis_server.restart()

    assert redis_server.port == port
    assert redis_server.pid != old_pid
    assert _gone(old_pid)
    client = redis.Redis.from_url(redis_server.url)
    try:
        assert client.ping() is True
        assert client.get("survives") is None  # a real restart: no persistence
    finally:
        client.close()


def test_redis_outage_then_recovery(redis_server: RedisServer) -> None:
    import redis

    redis_server.stop()
    assert not redis_server.running
    client = redis.Redis.from_url(redis_server.url, socket_connect_timeout=1, retry=None)
    try:
        with pytest.raises(redis.ConnectionError):
            client.ping()
    finally:
        client.close()

    redis_server.start()
    client = redis.Redis.from_url(redis_server.url)
    try:
        assert client.ping() is True
    finally:
        client.close()


def test_redis_url_fixture_revives_and_flushes(
    redis_server: RedisServer, request: pytest.FixtureRequest
) -> None:
    import redis

    client = redis.Redis.from_url(redis_server.url)
    try:
        client.set("stale", "1")
    finally:
        client.close()
    redis_server.stop()  # leave the session server down, as an outage test might
    assert not redis_server.running

    url = request.getfixturevalue("redis_url")

    assert redis_server.running
    client = redis.Redis.from_url(url)
    try:
        assert client.ping() is True
        assert client.dbsize() == 0
    finally:
        client.close()


def test_redis_restarted_from_a_thread_outlives_the_thread(redis_server: RedisServer) -> None:
    # e.g. ``await asyncio.to_thread(redis_server.restart)`` in an async test
    import redis

    worker = threading.Thread(target=redis_server.restart)
    worker.start()
    worker.join()
    pid = redis_server.pid
    assert pid is not None
    # The parent-death signal fires when the spawning thread exits; poll a
    # little to make sure nothing killed the server after the join.
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        assert redis_server.running, redis_server.log()
        time.sleep(0.05)
    client = redis.Redis.from_url(redis_server.url)
    try:
        assert client.ping() is True
    finally:
        client.close()


def test_private_redis_kill_and_close_leave_nothing() -> None:
    require_service("redis-server", redis_available())
    server = RedisServer().start()
    pid, tmpdir = server.pid, server.tmpdir
    server.kill()
    assert _gone(pid)
    assert not server.running
    with pytest.raises(TimeoutError):
        wait_for_port("127.0.0.1", server.port, timeout=0.2)
    server.close()
    assert not tmpdir.exists()


def test_redis_start_failure_reports_log_and_cleans_up() -> None:
    require_service("redis-server", redis_available())
    server = RedisServer(extra_args=["--no-such-option", "x"])
    with pytest.raises(ServerError, match=r"(?i)no-such-option"):
        server.start()
    assert not server.running
    assert not server.tmpdir.exists()


def test_redis_port_race_on_first_start_picks_another_port() -> None:
    require_service("redis-server", redis_available())
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        busy_port = busy.getsockname()[1]

        explicit = RedisServer(port=busy_port)
        with pytest.raises(ServerError, match="Address already in use"):
            explicit.start()
        assert not explicit.tmpdir.exists()

        auto = RedisServer()
        auto.port = busy_port  # as if another process grabbed the free port first
        with auto.start():
            assert auto.running
            assert auto.port != busy_port
            assert "Address already in use" in auto.log()


def test_private_postgres_bad_setting_reports_log_and_cleans_up() -> None:
    require_service("PostgreSQL", postgres_available())
    server = PostgresServer(settings={"no_such_setting": "1"})
    with pytest.raises(ServerError, match="no_such_setting"):
        server.start()
    assert not server.running
    assert not server.tmpdir.exists()


# ---------------------------------------------------------------- postgres


def test_postgres_fixture_select_1(postgres_server: PostgresServer) -> None:
    import psycopg

    url = postgres_server.url()
    assert url == f"postgres://postgres@127.0.0.1:{postgres_server.port}/test"
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        assert conn.execute("SELECT current_database()").fetchone() == ("test",)


def test_postgres_create_database(postgres_server: PostgresServer) -> None:
    import psycopg

    name = f"created_{uuid.uuid4().hex[:8]}"
    url = postgres_server.create_database(name)
    assert url == postgres_server.url(name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id serial PRIMARY KEY, v text)")
        conn.execute("INSERT INTO t (v) VALUES ('hello')")
        assert conn.execute("SELECT v FROM t").fetchall() == [("hello",)]
        assert conn.execute("SELECT current_database()").fetchone() == (name,)
    postgres_server.drop_database(name)
    with psycopg.connect(postgres_server.url("postgres")) as conn:
        row = conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (name,))
        assert row.fetchone() == (0,)


def test_postgres_url_fixture_is_fresh_and_empty(postgres_url: str) -> None:
    import psycopg

    with psycopg.connect(postgres_url) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
    assert tables == (0,)


def test_postgres_handles_many_connections(postgres_server: PostgresServer) -> None:
    import psycopg

    conns = [psycopg.connect(postgres_server.url()) for _ in range(120)]
    try:
        assert all(c.execute("SELECT 1").fetchone() == (1,) for c in conns)
    finally:
        for c in conns:
            c.close()


def test_private_postgres_stop_leaves_nothing() -> None:
    require_service("PostgreSQL", postgres_available())
    server = PostgresServer(default_db="other").start()
    postmaster = server._postmaster_pid()
    assert postmaster is not None
    backends = _children(postmaster)
    assert backends, "postmaster should have background processes"
    tmpdir = server.tmpdir
    server.close()
    assert _gone(postmaster)
    assert all(_gone(pid) for pid in backends)
    assert not tmpdir.exists()


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found
