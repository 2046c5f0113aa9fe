"""Every Python and shell example on the documentation pages, run by Sybil.

Collected: each ```python and ```sh/```bash/```console fenced block of every ``docs/**/*.md``
page (a new page is covered as soon as it exists), and ``invisible-code-block: python`` comments,
which set up or check an example without showing on the page. A page made of ``{include}``
directives (``security.md``, ``changelog.md``) is read with the included files in place, as
Sphinx builds it. A block after ``% skip: next "why"`` (or ``<!-- skip: next "why" -->``) is
reported as skipped with that reason; use it only for what cannot run here (servers, networks).

Python blocks run in one namespace per page, top to bottom, under the test settings
(``project.settings``, ``DJANGO_DEVELOPMENT=1``) with a transactional test database and a fresh
in-memory channel layer per block. Every ``NEXIOS_COMPAT = {...}`` literal must use only real
settings (keys of ``conf.CONFIG_DEFAULTS``). The namespace starts with these helpers:

- ``run(coroutine)``: run it to the end (blocks are sync code), then stop the rooms' hub.
- ``connected(app, path, origin=None, **kw)``: an async context manager yielding a connected
  ``channels.testing.WebsocketCommunicator`` on ``app`` (a ``NexiosApp``, a router, an
  endpoint's ``as_asgi()`` or any ASGI app); ``origin`` sends ``Host``/``Origin`` headers
  for the origin check. It fails if the socket is refused.
- ``as_module(name)``: make the page's namespace so far importable as ``name`` (so a later
  block's ``from mysite.sockets import app`` finds what an earlier block defined).

Shell blocks run with ``bash -e`` in one temporary directory per page, with the venv's
``bin`` first on ``PATH``. A block of only ``NAME=value`` lines is an environment listing,
not commands: each name must be one that ``project/settings.py`` reads.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import types
from collections.abc import AsyncIterator, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator
from sybil import Document, Example, Sybil
from sybil.evaluators.python import PythonEvaluator
from sybil.parsers.myst import CodeBlockParser, PythonCodeBlockParser, SkipParser

os.environ.setdefault("DJANGO_DEVELOPMENT", "1")

DOCS = Path(__file__).resolve().parent
REPO = DOCS.parent
INCLUDE = re.compile(r"^```\{include\} (?P<path>\S+)\n(?:[ \t]*:[\w-]+:.*\n)*```[ \t]*$", re.M)
SERVES_OR_INSTALLS = re.compile(r"\b(daphne|runserver|pip install|make run|nginx|systemctl)\b")
ENV_LINE = re.compile(r"^(?:[A-Z_][A-Z0-9_]*=\S*[ \t]*)+(?:#.*)?$")


class BuiltDocument(Document):
    """A MyST page with its ``{include}`` directives replaced by the files they include."""

    @classmethod
    def parse(cls, path: str, *parsers: Any, encoding: str = "utf-8") -> Document:
        text = Path(path).read_text(encoding=encoding)
        text = INCLUDE.sub(lambda m: (Path(path).parent / m["path"]).read_text(encoding=encoding), text)
        document = cls(text, path)
        for parser in parsers:
            for region in parser(document):
                document.add(region)
        return document


# Python --------------------------------------------------------------------------


def check_settings(source: str) -> None:
    """Every key of a ``NEXIOS_COMPAT = {...}`` literal is a real setting."""
    from nexios_compat.conf import CONFIG_DEFAULTS

    for node in ast.walk(ast.parse(source)):
        named = isinstance(node, ast.Assign) and any(
            getattr(target, "id", None) == "NEXIOS_COMPAT" for target in node.targets
        )
        if named and isinstance(node.value, ast.Dict):
            keys = [k.value for k in node.value.keys if isinstance(k, ast.Constant)]
            unknown = sorted(set(keys) - set(CONFIG_DEFAULTS))
            assert not unknown, f"NEXIOS_COMPAT keys that are not settings: {unknown}"


python_evaluator = PythonEvaluator()


def evaluate_python(example: Example) -> None:
    check_settings(example.parsed)
    python_evaluator(example)


class PythonParser(PythonCodeBlockParser):
    def __init__(self) -> None:
        super().__init__()
        self.codeblock_parser = CodeBlockParser("python", evaluate_python)


def run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine in a new loop, stopping the hub it started before the loop closes."""
    from nexios_compat.engine import stop_hub

    async def main() -> Any:
        try:
            return await coroutine
        finally:
            await stop_hub()

    return asyncio.run(main())


@contextlib.asynccontextmanager
async def connected(
    app: Any, path: str, origin: str | None = None, **kwargs: Any
) -> AsyncIterator[WebsocketCommunicator]:
    headers = list(kwargs.pop("headers", []))
    if origin is not None:
        host = origin.split("://", 1)[1]
        headers += [(b"host", host.encode()), (b"origin", origin.encode())]
    communicator = WebsocketCommunicator(app, path, headers=headers, **kwargs)
    accepted, code = await communicator.connect(timeout=5)
    assert accepted, f"{path} refused the socket ({code})"
    try:
        yield communicator
    finally:
        await communicator.disconnect()


def page_namespace(namespace: dict[str, Any]) -> None:
    made: list[str] = []

    def as_module(name: str) -> None:
        module = types.ModuleType(name)
        module.__dict__.update({k: v for k, v in namespace.items() if not k.startswith("__")})
        parent, _, child = name.rpartition(".")
        if parent and parent not in sys.modules:
            sys.modules[parent] = types.ModuleType(parent)
            sys.modules[parent].__path__ = []  # a package, so its submodules import
            made.append(parent)
        if parent:
            setattr(sys.modules[parent], child, module)
        sys.modules[name] = module
        made.append(name)

    workdir = tempfile.TemporaryDirectory(prefix="docs-shell-")
    namespace.update(
        run=run,
        connected=connected,
        as_module=as_module,
        _made_modules=made,
        _workdir=workdir,
        _shell={"cwd": workdir.name},
        _environ=dict(os.environ),
    )


def page_teardown(namespace: dict[str, Any]) -> None:
    for name in namespace["_made_modules"]:
        sys.modules.pop(name, None)
    namespace["_workdir"].cleanup()
    os.environ.clear()
    os.environ.update(namespace["_environ"])


# Shell ---------------------------------------------------------------------------


def settings_environment() -> set[str]:
    source = (REPO / "project" / "settings.py").read_text()
    return set(re.findall(r"os\.environ(?:\.get\(|\[)\"(\w+)\"", source))


def evaluate_shell(example: Example) -> None:
    source = str(example.parsed)
    lines = [line for line in source.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if lines and all(ENV_LINE.match(line.strip()) for line in lines):
        names = {m for line in lines for m in re.findall(r"([A-Z_][A-Z0-9_]*)=", line.split("#")[0])}
        unknown = sorted(names - settings_environment())
        assert not unknown, f"project/settings.py reads no {unknown}"
        return
    if any(line.startswith("$ ") for line in lines):  # a console session: run what follows the prompts
        source = "\n".join(line[2:] for line in lines if line.startswith("$ "))
    unmarked = SERVES_OR_INSTALLS.search(source)
    assert not unmarked, (
        f"{unmarked[0]!r} starts a server or installs packages: mark the block "
        '`% skip: next "why"` and say where it is run instead'
    )
    env = {k: v for k, v in os.environ.items() if k not in {"DJANGO_SETTINGS_MODULE", "PYTHONPATH"}}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    # A page's blocks run one after another in one shell session: a `cd` carries over.
    state = example.namespace["_shell"]
    cwd_file = Path(example.namespace["_workdir"].name, ".cwd")
    with subprocess.Popen(
        ["bash", "-ec", f'{source}\npwd > "{cwd_file}"'],
        cwd=state["cwd"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    ) as process:
        try:
            output, _ = process.communicate(timeout=120)
        finally:
            # Whatever the block started (a stray server) goes with it.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
    result = subprocess.CompletedProcess(process.args, process.returncode, output)
    assert result.returncode == 0, f"exit status {result.returncode}:\n{result.stdout}"
    state["cwd"] = cwd_file.read_text().strip()


# Collection ----------------------------------------------------------------------


@pytest.fixture(autouse=True)
def fresh_layer() -> Iterator[None]:
    """Each block's loop gets its own in-memory layer."""
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


pytest_collect_file = Sybil(
    parsers=[
        SkipParser(),
        PythonParser(),
        *(CodeBlockParser(language, evaluate_shell) for language in ("sh", "bash", "console")),
    ],
    patterns=["*.md"],
    excludes=["_build/*"],
    document_types={".md": BuiltDocument},
    setup=page_namespace,
    teardown=page_teardown,
    fixtures=["transactional_db"],
).pytest()

# The built site (``make docs`` runs before the tests) holds copies of pages and of the
# README among its downloads: they are not pages to test.
collect_ignore_glob = ["_build/*"]
