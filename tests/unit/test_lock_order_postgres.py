"""On PostgreSQL, two writers of the same rooms queue behind each other instead of deadlocking."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from devservers import REPO_ROOT, run_manage


def test_a_batch_waits_for_busy_rows_in_name_order_holding_none_after_them(postgres_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": postgres_url, "REDIS_URL": "", "DEBUG": "0"}
    run_manage("migrate", "--noinput", env=env)
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.lock_order_worker"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    # Before: the free row ("b") was locked first, then the batch waited for "a" holding it.
    assert out["b_free_while_waiting"], out
    assert out["busy"] == [] and out["seqs"] == [1, 1], out
