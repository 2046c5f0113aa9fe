"""project/settings.py: DEBUG off, SECRET_KEY required outside development; ``make run`` works bare."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from devservers import REPO_ROOT

SHOW = (
    "import django; django.setup(); from django.conf import settings as s; print(s.DEBUG, s.SECRET_KEY[:8])"
)


def bare_env(**extra: str) -> dict[str, str]:
    """An environment with none of the settings' variables (nor pytest's)."""
    keep = {"PATH", "HOME", "LANG"}
    env = {k: v for k, v in os.environ.items() if k in keep}
    return {**env, "PYTHONPATH": str(REPO_ROOT), "DJANGO_SETTINGS_MODULE": "project.settings", **extra}


def settings_in(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", SHOW], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )


def test_outside_development_a_missing_secret_key_fails_loudly() -> None:
    result = settings_in(bare_env())
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and "SECRET_KEY" in result.stderr


def test_debug_is_off_unless_development_says_otherwise() -> None:
    assert settings_in(bare_env(SECRET_KEY="k" * 50)).stdout.split() == ["False", "k" * 8]
    assert settings_in(bare_env(DJANGO_DEVELOPMENT="1")).stdout.split() == ["True", "insecure"]
    assert settings_in(bare_env(DJANGO_DEVELOPMENT="1", DEBUG="0")).returncode == 0
    assert settings_in(bare_env(DEBUG="1")).stdout.split() == ["True", "insecure"]


def test_make_run_works_with_no_environment(tmp_path: Path) -> None:
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    # A stand-in venv: python is this one, daphne only loads the settings and says what it saw.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    (bin_dir / "daphne").write_text(
        f"#!/bin/sh\nDJANGO_SETTINGS_MODULE=project.settings exec {sys.executable} -c '{SHOW}'\n"
    )
    for script in ("python", "daphne"):
        (bin_dir / script).chmod(0o755)
    (bin_dir / "activate").touch()  # newer than requirements.txt: no venv is built
    env = bare_env(DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    del env["DJANGO_SETTINGS_MODULE"]  # manage.py and asgi pick project.settings themselves
    result = subprocess.run(
        [make, "-s", "run", f"BIN={bin_dir}"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-2:] == ["True", "insecure"]
