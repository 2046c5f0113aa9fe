"""Idempotent sends on PostgreSQL: the store's checks, and duplicates raced from several connections."""

from __future__ import annotations

from tests.support.cluster import run_worker


def test_postgresql_stores_each_client_id_once_even_when_raced(postgres_url: str) -> None:
    out = run_worker("tests.support.idem_worker", postgres_url)
    assert out["failed"] == {}, "\n".join(out["failed"].values())
    assert out["errors"] == [], "\n".join(out["errors"])
    for room, got in out["got"].items():
        # Whoever won, every thread was answered with the same seqs, one row each, none burned.
        assert got == [[1, 2, 3, 4, 5]] * 4, room
        assert out["rows"][room] == [1, 2, 3, 4, 5], room
        assert out["counters"][room] == 5, room
