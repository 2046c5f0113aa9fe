"""Idempotent sends on PostgreSQL: the store's checks, and duplicates raced from several connections."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import typing

from devservers import REPO_ROOT, run_manage


def test_postgresql_stores_each_client_id_once_even_when_raced(postgres_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": postgres_url, "REDIS_URL": "", "DEBUG": "0"}
    run_manage("migrate", "--noinput", env=env)
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.idem_worker"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out: dict[str, typing.Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["failed"] == {}, "\n".join(out["failed"].values())
    assert out["errors"] == [], "\n".join(out["errors"])
    for room, got in out["got"].items():
        # Whoever won, every thread was answered with the same seqs, one row each, none burned.
        assert got == [[1, 2, 3, 4, 5]] * 4, room
        assert out["rows"][room] == [1, 2, 3, 4, 5], room
        assert out["counters"][room] == 5, room
