"""``.ci/deps`` (run by ``make test``): installs what is missing when it can, else says what will skip."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEPS = ROOT / ".ci" / "deps"


def fake_bin(tmp_path: pathlib.Path, **scripts: str) -> pathlib.Path:
    """A PATH holding only the given commands (shell scripts), so every package probe misses."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in scripts.items():
        path = bin_dir / name.replace("_", "-")
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)
    return bin_dir


def run_deps(bin_dir: pathlib.Path, **env: str) -> subprocess.CompletedProcess[str]:
    bash = shutil.which("bash")
    assert bash is not None
    environment = {"PATH": str(bin_dir), "HOME": os.environ.get("HOME", "/tmp"), **env}
    return subprocess.run(
        [bash, str(DEPS)], env=environment, capture_output=True, text=True, timeout=60, check=False
    )


def test_as_root_with_apt_get_it_installs_every_missing_package(tmp_path: pathlib.Path) -> None:
    bin_dir = fake_bin(tmp_path, id="echo 0", apt_get="exit 0")
    result = run_deps(bin_dir, DEPS_DRY_RUN="1")
    assert result.returncode == 0
    install = [line for line in result.stdout.splitlines() if "apt-get install" in line]
    assert len(install) == 1
    for package in (
        "make",
        "python3.11-venv",
        "redis-server",
        "chromium",
        "nginx-light",
        "nodejs",
        "iproute2",
    ):
        assert f" {package}" in install[0]


def test_without_root_or_sudo_it_says_which_tests_will_be_skipped(tmp_path: pathlib.Path) -> None:
    bin_dir = fake_bin(tmp_path, id="echo 1000", sudo="exit 1", apt_get="echo must not run; exit 9")
    result = run_deps(bin_dir)
    assert result.returncode == 0  # reporting is not a failure: the tests skip (or fail under CI)
    assert "must not run" not in result.stdout
    assert "cannot install system packages here" in result.stderr
    assert "redis-server: tests with Redis" in result.stderr
    assert "chromium: browser tests" in result.stderr
    assert "apt-get install make" in result.stderr


def test_a_complete_machine_is_left_alone(tmp_path: pathlib.Path) -> None:
    present = {
        name: "exit 0"
        for name in ("make", "python3.11", "redis_server", "chromium", "nginx", "node", "initdb", "ip")
    }
    bin_dir = fake_bin(tmp_path, id="echo 0", apt_get="echo must not run; exit 9", **present)
    result = run_deps(bin_dir)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_test_runs_deps_before_lint_and_ci_run_only_calls_make_test() -> None:
    plan = subprocess.run(
        ["make", "-n", "test"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert plan.index("bash .ci/deps") < plan.index("lint")
    script = (ROOT / ".ci" / "run").read_text()
    assert "apt-get" not in script
    assert script.rstrip().endswith("exec make test")
