"""Sphinx configuration: MyST pages, autodoc of the public API, reference tables generated from the code.

Built by ``make docs`` with ``-n -W``: every warning and every unresolved reference fails the build.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import django

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "docs" / "_ext")]
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
# Autodoc imports the example project only to read docstrings: its development settings do.
os.environ.setdefault("DJANGO_DEVELOPMENT", "1")
django.setup()

project = "nexios_compat"
author = "nexios_compat contributors"
copyright = "nexios_compat contributors"
release = "0.2.0"
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "nexios_reference",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "**/_build", "*.png", "conftest.py"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

html_theme = "alabaster"
html_static_path: list[str] = []
html_theme_options = {"description": "Nexios WebSocket rooms for Django", "fixed_sidebar": True}

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "show-inheritance": False}

nitpicky = True
# No intersphinx (the build runs without network): names from the standard library, Django,
# Channels, asgiref and prometheus_client are not resolved. Our own names are.
nitpick_ignore_regex = [
    # Private modules and names (an underscore) are not documented; signatures may still show them.
    (r"py:.*", r"nexios_compat\..*\._\w+.*"),
    (r"py:.*", r"(typing|collections|types|enum|datetime|uuid|asyncio|logging|json|http|abc)(\..*)?"),
    (r"py:.*", r"(django|channels|asgiref|daphne|prometheus_client|autobahn|twisted)(\..*)?"),
    (r"py:.*", r"(str|int|float|bool|bytes|dict|list|tuple|set|object|None|Exception|type|T|Any)"),
    (r"py:.*", r"(ValueError|RuntimeError|KeyError|TypeError|BaseException|Callable|Awaitable|Iterator)"),
    (r"py:.*", r"(Mapping|Sequence|Iterable|AsyncIterator|Coroutine|ClassVar|Self|Literal|Optional)"),
]
