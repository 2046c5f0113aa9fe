"""The built reference lists every setting, check code, close code and metric the code has.

The reference pages are generated from the code (``docs/_ext/nexios_reference.py``),
so this holds by construction; the test proves it by building the site with
``-n -W`` (warnings and unresolved references fail) and reading each name back
from the HTML, against lists taken from the code here, not from the generator.
"""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from nexios_compat import status, types
from nexios_compat.conf import CONFIG_DEFAULTS

REPO = Path(__file__).resolve().parents[2]
# An error frame as the source writes it: '{"type":"error","error":"rate_limited"}' or a dict.
ERROR_FRAME = r"""["']type["']\s*:\s*["']error["']\s*,\s*["']error["']\s*:\s*["'](\w+)"""


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("docs-html")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-E",
            "-n",
            "-W",
            "--keep-going",
            "-q",
            "-b",
            "html",
            "docs",
            str(out),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"sphinx-build failed:\n{result.stdout}\n{result.stderr}"
    return out


def page_text(built: Path, page: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", (built / page).read_text()))


def test_every_setting_is_in_the_reference(built: Path) -> None:
    text = page_text(built, "ref/settings.html")
    missing = [key for key in CONFIG_DEFAULTS if not re.search(rf"\b{key}\b", text)]
    assert not missing, f"settings missing from ref/settings: {missing}"
    # Each has its own anchor, so other pages can link to it.
    anchors = set(re.findall(r'id="setting-([A-Z_]+)"', (built / "ref/settings.html").read_text()))
    assert set(CONFIG_DEFAULTS) <= anchors, set(CONFIG_DEFAULTS) - anchors


def test_every_check_code_is_in_the_reference(built: Path) -> None:
    source = "".join(path.read_text() for path in (REPO / "nexios_compat" / "checks").glob("*.py"))
    codes = set(re.findall(r"""id=["'](nexios_compat\.[A-Z]\d{3})["']""", source))
    assert codes, "no check ids found in the checks package"
    text = page_text(built, "ref/checks.html")
    assert not [c for c in sorted(codes) if c not in text], "check codes missing from ref/checks"


def test_every_close_code_is_in_the_reference(built: Path) -> None:
    named = {
        name: value
        for module in (types, status)
        for name, value in vars(module).items()
        if re.fullmatch(r"WS_\d{4}_\w+", name) and isinstance(value, int)
    }
    assert {"WS_1000_NORMAL_CLOSURE", "WS_4403_FORBIDDEN"} <= set(named)
    text = page_text(built, "ref/close-codes.html")
    missing = [n for n, v in named.items() if n not in text or not re.search(rf"\b{v}\b", text)]
    assert not missing, f"close codes missing from ref/close-codes: {missing}"


def test_every_error_frame_is_in_the_reference(built: Path) -> None:
    frames = set()
    for path in (REPO / "nexios_compat").rglob("*.py"):
        frames |= set(re.findall(ERROR_FRAME, path.read_text()))
    text = page_text(built, "ref/close-codes.html")
    assert "history_unavailable" in frames
    assert not [f for f in sorted(frames) if f not in text]


def test_every_metric_is_in_the_reference(built: Path) -> None:
    import nexios_compat.metrics  # noqa: F401  (registers them)

    names = set()
    for family in REGISTRY.collect():
        if family.name.startswith("nexios_compat_"):
            names.add(family.name + ("_total" if family.type == "counter" else ""))
    assert "nexios_compat_history_saved_total" in names
    text = page_text(built, "ref/metrics.html")
    missing = [n for n in sorted(names) if not re.search(rf"\b{n}\b", text)]
    assert not missing, f"metrics missing from ref/metrics: {missing}"


def test_the_api_reference_documents_the_public_names(built: Path) -> None:
    import nexios_compat

    text = (built / "ref/api.html").read_text()
    for name in ("Channel", "ChannelBox", "WebSocketEndpoint", "NexiosApp", "WSRouter", "WebSocket"):
        assert name in nexios_compat.__all__
        assert re.search(rf'id="nexios_compat\.[\w.]*\b{name}"', text), name
