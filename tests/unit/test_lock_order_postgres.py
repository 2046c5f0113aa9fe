"""On PostgreSQL, two writers of the same rooms queue behind each other instead of deadlocking."""

from __future__ import annotations

from tests.support.cluster import run_worker


def test_a_batch_waits_for_busy_rows_in_name_order_holding_none_after_them(postgres_url: str) -> None:
    out = run_worker("tests.support.lock_order_worker", postgres_url, timeout=120)
    # Before: the free row ("b") was locked first, then the batch waited for "a" holding it.
    assert out["b_free_while_waiting"], out
    assert out["busy"] == [] and out["seqs"] == [1, 1], out
