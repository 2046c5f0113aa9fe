"""The tutorial (docs/tutorial.md), run exactly as written on a new project.

The page's fenced blocks marked ``<!-- fresh-site -->``, in order: ``django-admin
startproject mysite`` in a temp dir, the shell install (``/path/to/dist`` is
where ``python -m build`` put the sdist and the wheel built from it, from a clean
copy of this checkout), the settings (``INSTALLED_APPS`` names merged into the
existing list, everything else appended), ``mysite/sockets.py``,
``mysite/asgi.py``, the room page (the endpoint added to the end of
``mysite/sockets.py``, ``mysite/views.py``, ``templates/room.html``,
``mysite/urls.py``), and the shell block that migrates and serves (the
``runserver`` line runs as the server, on a free port and without the
autoreloader). Two ``websockets`` clients then talk in the room the page names,
the room page and its ``rooms.js`` are fetched, and a client of the page's socket
sees itself in a ``presence_state`` frame. A step missing from the page fails here.

The install runs in a new virtualenv whose only packages are the dev venv's
(through a ``.pth`` line, which does not load the editable install of this
repo), so ``pip install`` really installs the app and the shared venv is not
touched.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import tomllib
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Origin

from devservers import REPO_ROOT, free_port, wait_for_port

TUTORIAL = REPO_ROOT / "docs" / "tutorial.md"
MARKER = "<!-- fresh-site -->"
PLACEHOLDER = "/path/to/dist"
TIMEOUT = 10.0


# Page parsing --------------------------------------------------------------------


@dataclass
class Block:
    lang: str
    code: str
    prose: str  # the text between the previous block and this one


def code_blocks(section: str, marker: str | None = None) -> list[Block]:
    """The fenced blocks of a section in order, dedented to their fence (only marked ones if ``marker``)."""
    blocks = []
    last_end = 0
    for match in re.finditer(r"^( *)```(\w*)\n(.*?)^\1```[ \t]*$", section, re.M | re.S):
        indent = len(match.group(1))
        lines = [line[indent:] if line[:indent].isspace() else line for line in match.group(3).splitlines()]
        prose = section[last_end : match.start()]
        last_end = match.end()
        if marker is not None and not prose.rstrip().endswith(marker):
            continue
        blocks.append(Block(match.group(2), "\n".join(lines) + "\n", prose))
    return blocks


def target_file(block: Block) -> str:
    """The ``mysite/...py`` or ``templates/...html`` file the prose before a block names."""
    names = re.findall(r"`(mysite/[\w/]+\.py|templates/[\w/]+\.html)`", block.prose)
    assert len(names) == 1, (
        f"expected one mysite/*.py or templates/*.html file named before the block, got {names}:\n"
        f"{block.prose}"
    )
    return names[0]


def merge_settings(settings: str, addition: str) -> str:
    """Merge the tutorial's settings block into a startproject settings.py.

    ``INSTALLED_APPS`` names above the ``# ... your apps ...`` line go first,
    the others last; every other statement is appended as written.
    """
    tree = ast.parse(addition)
    lines = addition.splitlines()
    first: list[str] = []
    last: list[str] = []
    rest: list[str] = []
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and [getattr(t, "id", None) for t in stmt.targets] == [
            "INSTALLED_APPS"
        ]:
            assert isinstance(stmt.value, ast.List), "INSTALLED_APPS in the tutorial is not a list"
            marker = next(
                (
                    i + 1
                    for i, line in enumerate(lines)
                    if "your apps" in line and line.strip().startswith("#")
                ),
                None,
            )
            for element in stmt.value.elts:
                assert isinstance(element, ast.Constant) and isinstance(element.value, str)
                before = marker is not None and element.lineno < marker
                (first if before else last).append(element.value)
        else:
            segment = ast.get_source_segment(addition, stmt)
            assert segment is not None
            rest.append(segment)
    assert first or last, "the tutorial's settings block adds no INSTALLED_APPS"

    existing = ast.parse(settings)
    apps = next(
        stmt
        for stmt in existing.body
        if isinstance(stmt, ast.Assign)
        and [getattr(t, "id", None) for t in stmt.targets] == ["INSTALLED_APPS"]
    )
    assert isinstance(apps.value, ast.List) and apps.end_lineno is not None
    current = [e.value for e in apps.value.elts if isinstance(e, ast.Constant)]
    merged = [*first, *(name for name in current if name not in first + last), *last]
    source = settings.splitlines()
    new_list = "INSTALLED_APPS = [\n" + "".join(f"    {name!r},\n" for name in merged) + "]"
    source[apps.lineno - 1 : apps.end_lineno] = [new_list]
    return "\n".join(source) + "\n\n# Added by the tutorial's steps.\n" + "\n\n".join(rest) + "\n"


def shell_lines(block: Block) -> list[str]:
    return [line.strip() for line in block.code.splitlines() if line.strip() and not line.startswith("#")]


# The site ------------------------------------------------------------------------


@dataclass
class Site:
    root: Path  # the project dir (manage.py)
    env: dict[str, str]
    port: int
    ws_url: str
    python: Path

    def run(self, command: str) -> str:
        result = subprocess.run(
            ["bash", "-ec", command],
            cwd=self.root,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, f"`{command}` failed ({result.returncode}):\n{result.stdout}"
        return result.stdout


def make_venv(path: Path) -> Path:
    """A virtualenv that sees the dev venv's packages but not its editable nexios_compat."""
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    python = path / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(site, "_dev_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # pip would write these scripts if daphne and Django were installed here rather than seen
    # through the .pth.
    scripts = {
        "daphne": "from daphne.cli import CommandLineInterface\nsys.exit(CommandLineInterface.entrypoint())",
        "django-admin": "from django.core.management import execute_from_command_line\n"
        "sys.exit(execute_from_command_line())",
    }
    for name, body in scripts.items():
        script = path / "bin" / name
        script.write_text(f"#!{python}\nimport sys\n{body}\n")
        script.chmod(0o755)
    return python


def build_dist(checkout: Path, dest: Path) -> Path:
    """``python -m build`` of a clean checkout: the sdist, then the wheel built from it, in ``dest``."""
    subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(dest), str(checkout)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    assert len(list(dest.glob("nexios_compat-*.whl"))) == 1, list(dest.iterdir())
    return dest


def checkout_copy(dest: Path) -> Path:
    """This repository as a fresh checkout would have it (no venv, caches or build output)."""
    ignore = shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", ".*_cache", "*.sqlite3*", "results"
    )
    shutil.copytree(REPO_ROOT, dest, ignore=ignore)
    return dest


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("fresh-site")
    page = TUTORIAL.read_text()
    blocks = code_blocks(page, MARKER)
    expected = ["sh", "sh", "python", "python", "python", "python", "python", "html", "python", "sh"]
    assert [b.lang for b in blocks] == expected, (
        "expected the tutorial's marked blocks: startproject (sh), install (sh), settings, sockets.py, "
        "asgi.py, the page's endpoint, views.py, room.html, urls.py, migrate and serve (sh); "
        f"got {[b.lang for b in blocks]}"
    )
    start, install, settings, sockets, asgi, endpoint, views, template, urls, serve = blocks

    python = make_venv(tmp / "venv")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DJANGO_SETTINGS_MODULE", "PYTHONPATH", "VIRTUAL_ENV"}
    }
    env["PATH"] = f"{python.parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    # 0. Start the project: the block's commands, its `cd` moving into the project.
    cwd = tmp
    for line in shell_lines(start):
        if line.startswith("cd "):
            cwd = cwd / line.split(None, 1)[1]
        else:
            subprocess.run(["bash", "-ec", line], cwd=cwd, check=True, env=env)
    root = cwd
    assert (root / "manage.py").exists(), f"the first block made no project at {root}"
    port = free_port()
    url_match = re.search(r"`ws://127\.0\.0\.1:8000(/[^`]*)`", page.rsplit(MARKER, 1)[-1])
    assert url_match, "the tutorial does not say (after the steps) which ws://127.0.0.1:8000/... URL to use"
    site = Site(root, env, port, f"ws://127.0.0.1:{port}{url_match.group(1)}", python)

    # 1. Install the wheel built from a clean copy of this checkout.
    lines = shell_lines(install)
    assert any(PLACEHOLDER in line for line in lines), f"the install block does not use {PLACEHOLDER}"
    dist = build_dist(checkout_copy(tmp / "nexios_compat"), tmp / "dist")
    for line in lines:
        site.run(line.replace(PLACEHOLDER, str(dist)))
    # 2-4. Settings, sockets.py, asgi.py.
    assert target_file(settings) == "mysite/settings.py"
    path = root / "mysite" / "settings.py"
    path.write_text(merge_settings(path.read_text(), settings.code))
    for block, name in ((sockets, "mysite/sockets.py"), (asgi, "mysite/asgi.py")):
        assert target_file(block) == name
        (root / name).write_text(block.code)
    # 5. The room page: an endpoint appended to sockets.py, then new or replaced files.
    assert target_file(endpoint) == "mysite/sockets.py" and "end of" in endpoint.prose
    with (root / "mysite" / "sockets.py").open("a") as file:
        file.write("\n\n" + endpoint.code)
    for block, name in (
        (views, "mysite/views.py"),
        (template, "templates/room.html"),
        (urls, "mysite/urls.py"),
    ):
        assert target_file(block) == name
        (root / name).parent.mkdir(exist_ok=True)
        (root / name).write_text(block.code)
    # 6. Migrate, then serve.
    log_path = tmp / "daphne.log"
    server = None
    try:
        for line in shell_lines(serve):
            if line.endswith("manage.py runserver"):
                assert server is None, "two server lines"
                with log_path.open("wb") as log:
                    server = subprocess.Popen(
                        ["bash", "-c", f"exec {line} --noreload 127.0.0.1:{port}"],
                        cwd=root,
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                wait_for_port("127.0.0.1", port, 30, server, log_path=log_path)
            else:
                site.run(line)
        assert server is not None, "the last block starts no server (manage.py runserver)"
        yield site
    finally:
        if server is not None and server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        if log_path.exists():
            print(f"----- daphne log -----\n{log_path.read_text(errors='replace')}")


# Tests ---------------------------------------------------------------------------


def test_the_app_is_installed_not_borrowed(site: Site) -> None:
    where = site.run(f"{site.python} -c 'import nexios_compat; print(nexios_compat.__file__)'").strip()
    assert where.startswith(str(site.python.parent.parent)), where
    # From the wheel, with what only package data carries.
    package = Path(where).parent
    for data in ("py.typed", "static/nexios_compat/rooms.js", "migrations/0001_initial.py"):
        assert (package / data).exists(), data
    assert list((package / "templates").rglob("*.html"))
    metadata = "import importlib.metadata as m; print(m.version('nexios-compat'))"
    version = site.run(f'{site.python} -c "{metadata}"')
    expected = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert version.strip().splitlines()[-1] == expected


def test_two_clients_talk_in_the_room(site: Site) -> None:
    origin = f"http://127.0.0.1:{site.port}"
    # The handler joins before it reads, so the echo of a client's first
    # message proves it is a member before the other one sends.
    with connect(site.ws_url, origin=Origin(origin), open_timeout=TIMEOUT) as alice:
        alice.send(json.dumps({"user": "alice", "text": "hi"}))
        assert json.loads(alice.recv(TIMEOUT)) == {"user": "alice", "text": "hi"}
        with connect(site.ws_url, origin=Origin(origin), open_timeout=TIMEOUT) as bob:
            bob.send(json.dumps({"user": "bob", "text": "pong <b>"}))
            assert json.loads(bob.recv(TIMEOUT)) == {"user": "bob", "text": "pong <b>"}
            assert json.loads(alice.recv(TIMEOUT)) == {"user": "bob", "text": "pong <b>"}
            alice.send(json.dumps({"user": "alice", "text": "ping"}))
            assert json.loads(alice.recv(TIMEOUT)) == {"user": "alice", "text": "ping"}
            assert json.loads(bob.recv(TIMEOUT)) == {"user": "alice", "text": "ping"}

    saved = site.run(
        "python manage.py shell -c "
        '"import json; from nexios_compat.models import Message; '
        "print(json.dumps([m.payload for m in Message.objects.filter(room__name='lobby')]))\""
    )
    assert json.loads(saved.splitlines()[-1]) == [
        {"user": "alice", "text": "hi"},
        {"user": "bob", "text": "pong <b>"},
        {"user": "alice", "text": "ping"},
    ]


def test_other_origins_are_refused(site: Site) -> None:
    with pytest.raises(InvalidStatus, match="403"):
        connect(site.ws_url, origin=Origin("http://evil.example"), open_timeout=TIMEOUT)


def test_admin_shows_rooms_and_messages(site: Site) -> None:
    out = site.run(
        "python manage.py shell -c "
        '"from django.contrib import admin; from nexios_compat.models import Room, Message; '
        'print(admin.site.is_registered(Room), admin.site.is_registered(Message))"'
    )
    assert out.splitlines()[-1].split() == ["True", "True"], out


def test_the_room_page_and_its_client_are_served(site: Site) -> None:
    base = f"http://127.0.0.1:{site.port}"
    with urllib.request.urlopen(f"{base}/rooms/lobby/?username=ann", timeout=TIMEOUT) as response:
        assert response.status == 200
        page = response.read().decode()
    script = re.search(r'from "(/static/[^"]+/rooms\.js)"', page)
    assert script, page
    with urllib.request.urlopen(base + script.group(1), timeout=TIMEOUT) as response:
        assert response.status == 200
        assert "export class RoomClient" in response.read().decode()
    with urllib.request.urlopen(f"{base}/rooms/lobby/history/", timeout=TIMEOUT) as response:
        assert response.status == 200


def test_the_page_socket_says_who_is_here(site: Site) -> None:
    origin = Origin(f"http://127.0.0.1:{site.port}")
    url = f"ws://127.0.0.1:{site.port}/ws/page/garden"
    with connect(f"{url}?username=ann", origin=origin, open_timeout=TIMEOUT) as ann:
        state = json.loads(ann.recv(TIMEOUT))
        assert state["type"] == "presence_state" and state["room"] == "garden", state
        assert list(state["state"]) == ["ann"], state
        assert state["state"]["ann"]["metas"][0]["username"] == "ann"
        with connect(f"{url}?username=bob", origin=origin, open_timeout=TIMEOUT) as bob:
            state = json.loads(bob.recv(TIMEOUT))
            assert state["type"] == "presence_state" and sorted(state["state"]) == ["ann", "bob"], state
            bob.send(json.dumps({"text": "hello"}))
            for client in (ann, bob):
                frame = json.loads(client.recv(TIMEOUT))
                while frame.get("type") == "presence_diff":  # bob's arrival, for ann
                    frame = json.loads(client.recv(TIMEOUT))
                assert frame == {"user": "bob", "text": "hello"}, frame
