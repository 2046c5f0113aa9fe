"""Reference tables generated from nexios_compat's source, so the docs cannot drift from it.

Directives (each takes no arguments):

``nexios-settings``
    Every key of ``conf.CONFIG_DEFAULTS``: its default as written, and the comment
    above it (a comment covers the keys below it up to the next comment).
``nexios-checks``
    Every ``Error``/``Warning`` with an ``id=`` in the ``checks`` package: level, message,
    hint, and the summary line the module docstring gives for the id.
``nexios-close-codes``
    Every ``WS_*`` close code in ``types.py``, the exceptions that close with it, the
    modules that use it, and any code written as a number in a ``close`` call.
``nexios-error-frames``
    Every ``{"type":"error","error":...}`` frame the package's source writes.
``nexios-metrics``
    Every Prometheus metric ``metrics.py`` registers: exposed name, type, labels, help.
``nexios-js``
    ``rooms.js``: its header comment, then each exported class, function and method
    with the ``/** ... */`` comment above it.

Each table is parsed from the files, not imported from a copy; the parsers are also
used by ``tests/test_docs_reference.py``.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import Directive
from docutils.statemachine import StringList

PACKAGE = Path(__file__).resolve().parents[2] / "nexios_compat"


def _source(name: str) -> str:
    return (PACKAGE / name).read_text()


# Settings -----------------------------------------------------------------------------


@dataclass
class Setting:
    key: str
    default: str
    comment: str


def settings() -> list[Setting]:
    """The keys of ``CONFIG_DEFAULTS`` in order, each with its default and comment."""
    text = _source("conf.py")
    tree = ast.parse(text)
    table = next(
        node.value
        for node in tree.body
        if isinstance(node, ast.AnnAssign | ast.Assign)
        and "CONFIG_DEFAULTS" in ast.unparse(node.targets[0] if isinstance(node, ast.Assign) else node.target)
    )
    assert isinstance(table, ast.Dict)
    comments: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string.lstrip("#").strip()
    result: list[Setting] = []
    current = ""
    for key, value in zip(table.keys, table.values, strict=True):
        assert isinstance(key, ast.Constant)
        block: list[str] = []
        line = key.lineno - 1
        while line in comments:
            block.insert(0, comments[line])
            line -= 1
        if block:
            current = " ".join(block)
        default = ast.get_source_segment(text, value) or ast.unparse(value)
        result.append(Setting(str(key.value), default, current))
    return result


# System checks ------------------------------------------------------------------------


@dataclass
class Check:
    id: str
    level: str
    message: str
    hint: str
    summary: str
    function: str


def _template(node: ast.expr | None) -> str:
    """A message as written: f-string fields shown as ``{...}``."""
    if node is None:
        return ""
    if isinstance(node, ast.Constant):
        return str(node.value)
    if isinstance(node, ast.JoinedStr):
        return "".join(
            str(part.value) if isinstance(part, ast.Constant) else "{" + ast.unparse(part.value) + "}"
            for part in node.values
        )
    if isinstance(node, ast.BinOp):
        return _template(node.left) + _template(node.right)
    return ast.unparse(node)


def checks() -> list[Check]:
    """Every check message the ``checks`` package can return, sorted by id."""
    doc = ast.get_docstring(ast.parse(_source("checks/__init__.py"))) or ""
    tree = ast.Module(
        body=[
            node
            for path in sorted((PACKAGE / "checks").glob("*.py"))
            for node in ast.parse(path.read_text()).body
        ],
        type_ignores=[],
    )
    summaries = {
        f"nexios_compat.{m.group(1)}": m.group(2).strip()
        for m in re.finditer(r"^- ([EW]\d{3})[^:]*:\s*(.*)$", doc, re.M)
    }
    found: list[Check] = []
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef):
            continue
        for call in ast.walk(function):
            if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)):
                continue
            keywords = {k.arg: k.value for k in call.keywords}
            ident = keywords.get("id")
            if call.func.id not in {"Error", "Warning", "Critical", "Info", "Debug"} or ident is None:
                continue
            assert isinstance(ident, ast.Constant), ast.unparse(ident)
            found.append(
                Check(
                    id=str(ident.value),
                    level=call.func.id,
                    message=_template(call.args[0] if call.args else keywords.get("msg")),
                    hint=_template(keywords.get("hint")),
                    summary=summaries.get(str(ident.value), ""),
                    function=function.name,
                )
            )
    return sorted(found, key=lambda c: c.id)


# Close codes and error frames ---------------------------------------------------------


@dataclass
class CloseCode:
    code: int
    name: str
    raised_by: list[str] = field(default_factory=list)
    used_in: list[str] = field(default_factory=list)


def _modules() -> list[tuple[str, str]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        out.append((".".join(rel.parts).removesuffix(".__init__"), path.read_text()))
    return out


def close_codes() -> list[CloseCode]:
    """The named close codes of ``types.py``, then codes other modules write as numbers."""
    named: dict[int, CloseCode] = {}
    for node in ast.parse(_source("types.py")).body:
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.targets[0], ast.Name)
            and re.fullmatch(r"WS_\d{4}_\w+", node.targets[0].id)
            and isinstance(node.value, ast.Constant)
        ):
            named[int(node.value.value)] = CloseCode(int(node.value.value), node.targets[0].id)
    by_name = {c.name: c for c in named.values()}
    exceptions = ast.parse(_source("exceptions.py"))
    for cls in exceptions.body:
        if not isinstance(cls, ast.ClassDef):
            continue
        for stmt in cls.body:
            if (
                isinstance(stmt, ast.Assign)
                and [ast.unparse(t) for t in stmt.targets] == ["code"]
                and isinstance(stmt.value, ast.Name)
                and stmt.value.id in by_name
            ):
                by_name[stmt.value.id].raised_by.append(cls.name)
    literal: dict[int, CloseCode] = {}
    for module, text in _modules():
        if module in {"nexios_compat.types", "nexios_compat.status"}:
            continue
        for name, code in by_name.items():
            if re.search(rf"\b{name}\b", text) and module not in code.used_in:
                code.used_in.append(module)
        for number in _literal_close_codes(text):
            target = named.get(number) or literal.setdefault(number, CloseCode(number, ""))
            if module not in target.used_in:
                target.used_in.append(module)
    return sorted([*named.values(), *literal.values()], key=lambda c: c.code)


def _literal_close_codes(text: str) -> set[int]:
    """Close codes written as numbers: ``close(4404)``, ``close(code=1000)``, ``{"code": 4404}``."""
    found: set[int] = set()

    def code_value(node: ast.expr | None) -> None:
        if isinstance(node, ast.Constant) and isinstance(node.value, int) and 1000 <= node.value <= 4999:
            found.add(node.value)

    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "code":
                    code_value(value)
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in {"close", "WebSocketDisconnect", "WebSocketException"}:
                if node.args:
                    code_value(node.args[0])
                for keyword in node.keywords:
                    if keyword.arg == "code":
                        code_value(keyword.value)
    return found


# '{"type":"error","error":"rate_limited"}' in a string, or the same as a dict literal.
ERROR_FRAME = re.compile(r"""["']type["']\s*:\s*["']error["']\s*,\s*["']error["']\s*:\s*["'](\w+)""")


def error_frames() -> dict[str, list[str]]:
    """``{error: [module, ...]}`` for every error frame written in the package's source."""
    frames: dict[str, list[str]] = {}
    for module, text in _modules():
        for match in ERROR_FRAME.finditer(text):
            modules = frames.setdefault(match.group(1), [])
            if module not in modules:
                modules.append(module)
    return dict(sorted(frames.items()))


# Metrics ------------------------------------------------------------------------------


@dataclass
class Metric:
    name: str
    type: str
    labels: list[str]
    help: str


def metrics() -> list[Metric]:
    """Every metric of ``nexios_compat.metrics``, named as ``/metrics`` exposes it."""
    from prometheus_client import REGISTRY
    from prometheus_client.metrics import MetricWrapperBase

    import nexios_compat.metrics as module

    found: dict[str, Metric] = {}
    for value in vars(module).values():
        if isinstance(value, MetricWrapperBase):
            name = value._name + ("_total" if value._type == "counter" else "")
            found[name] = Metric(name, value._type, list(value._labelnames), value._documentation)
    collectors = [
        c
        for c in vars(module).values()
        if isinstance(c, type) and c.__module__ == module.__name__ and hasattr(c, "collect")
    ]
    for collector in list(REGISTRY._collector_to_names):
        if type(collector) in collectors:
            for family in collector.collect():
                name = family.name + ("_total" if family.type == "counter" else "")
                labels = sorted({k for s in family.samples for k in s.labels} - {"le"})
                found[name] = Metric(name, family.type, labels, family.documentation)
    return sorted(found.values(), key=lambda m: m.name)


# rooms.js -----------------------------------------------------------------------------

ROOMS_JS = PACKAGE / "static" / "nexios_compat" / "rooms.js"


@dataclass
class JsItem:
    signature: str
    doc: str
    kind: str  # "class", "function" or "method"


def rooms_js() -> tuple[str, list[JsItem]]:
    """The header comment of ``rooms.js`` and its exported API with their comments."""
    text = ROOMS_JS.read_text()
    header = []
    for line in text.splitlines():
        if not line.startswith("//"):
            break
        header.append(line[3:] if line.startswith("// ") else line[2:])
    items: list[JsItem] = []
    pattern = re.compile(
        r"(?:/\*\*(?P<doc>.*?)\*/\s*)?^(?P<indent> *)"
        r"(?P<sig>export class \w+[^{]*|export function \w+\([^)]*\)"
        r"|(?:async )?(?!if\b|for\b|while\b|switch\b|catch\b)[a-zA-Z]\w*\([^)]*\)(?= \{))",
        re.M | re.S,
    )
    in_class = False
    for match in pattern.finditer(text):
        sig = match.group("sig").strip()
        doc = " ".join(line.strip(" *") for line in (match.group("doc") or "").splitlines()).strip()
        if sig.startswith("export class"):
            in_class = True
            items.append(JsItem(sig.removeprefix("export ").strip(), doc, "class"))
        elif sig.startswith("export function"):
            in_class = False
            items.append(JsItem(sig.removeprefix("export "), doc, "function"))
        elif in_class and len(match.group("indent")) == 2 and doc:
            items.append(JsItem(sig, doc, "method"))
    return "\n".join(header).strip(), items


# Directives ---------------------------------------------------------------------------


def _table(headers: list[str], rows: list[list[str]], widths: list[int] | None = None) -> list[str]:
    """A MyST ``list-table``; cells are Markdown (literals already marked)."""
    lines = [":::{list-table}", ":header-rows: 1"]
    if widths:
        lines.append(":widths: " + " ".join(map(str, widths)))
    lines.append("")
    for row in [headers, *rows]:
        for i, cell in enumerate(row):
            text = cell.replace("\n", " ") or "&nbsp;"
            lines.append(("* - " if i == 0 else "  - ") + text)
    return [*lines, ":::", ""]


def literal(text: str) -> str:
    """Inline code in Markdown, fenced with enough backticks."""
    if not text:
        return ""
    fence = "`" * (max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def prose(text: str) -> str:
    """A code comment or docstring line as Markdown: ``code`` spans kept, other markup escaped."""
    out = []
    for part in re.split(r"(``[^`]+``|`[^`]+`)", text):
        if part.startswith("`"):
            out.append(literal(part.strip("`")))
        else:
            out.append(re.sub(r"([*_|<>\[\]\\#])", r"\\\1", part))
    return "".join(out)


class _Generated(Directive):
    has_content = False

    def lines(self) -> list[str]:
        raise NotImplementedError

    def run(self) -> list[nodes.Node]:
        container = nodes.container(classes=["nexios-generated"])
        self.state.nested_parse(
            StringList(self.lines(), source="nexios_reference"), self.content_offset, container
        )
        return container.children


class SettingsDirective(_Generated):
    def lines(self) -> list[str]:
        out: list[str] = []
        for setting in settings():
            out += [
                f":::{{setting}} {setting.key}",
                f"Default: {literal(setting.default)}",
                "",
                prose(setting.comment),
                ":::",
                "",
            ]
        return out


class ChecksDirective(_Generated):
    def lines(self) -> list[str]:
        out: list[str] = []
        for check in checks():
            out += [f":::{{check}} {check.id}", f"**{check.level}** (from `{check.function}`)", ""]
            if check.summary:
                out += [prose(check.summary), ""]
            out += [f"Message: {literal(check.message)}", ""]
            if check.hint:
                out += [f"Hint: {literal(check.hint)}", ""]
            out += [":::", ""]
        return out


class CloseCodesDirective(_Generated):
    def lines(self) -> list[str]:
        rows = []
        for code in close_codes():
            rows.append(
                [
                    f"`{code.code}`",
                    literal(code.name) if code.name else "(a number in the code)",
                    ", ".join(f"{{py:exc}}`~nexios_compat.exceptions.{e}`" for e in code.raised_by),
                    ", ".join(literal(m) for m in code.used_in),
                ]
            )
        return _table(["code", "name", "raised as", "used in"], rows, [8, 36, 20, 36])


class ErrorFramesDirective(_Generated):
    def lines(self) -> list[str]:
        rows = [
            [literal(f'{{"type": "error", "error": "{error}"}}'), ", ".join(literal(m) for m in modules)]
            for error, modules in error_frames().items()
        ]
        return _table(["frame", "written by"], rows, [50, 50])


class MetricsDirective(_Generated):
    def lines(self) -> list[str]:
        rows = [
            [literal(m.name), m.type, ", ".join(literal(label) for label in m.labels), prose(m.help)]
            for m in metrics()
        ]
        return _table(["name", "type", "labels", "meaning"], rows, [30, 10, 10, 50])


class RoomsJsDirective(_Generated):
    def lines(self) -> list[str]:
        header, items = rooms_js()
        out = ["```text", *header.splitlines(), "```", ""]
        for item in items:
            directive = {"class": "js:class", "function": "js:function", "method": "js:method"}[item.kind]
            signature = item.signature.removeprefix("class ").removeprefix("function ").removeprefix("async ")
            signature = re.sub(r"\s+extends\s+\w+", "", signature)
            doc = prose(item.doc) or "&nbsp;"
            if item.kind == "method":
                # A method's comment may hold @param lines: each on its own line.
                doc = re.sub(r"\s*@param ", "\n\n- ", doc).strip()
            if item.kind == "class":
                out += [f"::::{{{directive}}} {signature}", doc, ""]
                continue
            if item.kind == "function" and out[-1:] != ["::::"] and any(i.kind == "class" for i in items):
                out += ["::::", ""] if "::::" not in out else []
            out += [f":::{{{directive}}} {signature}", doc, ":::", ""]
        if "::::" not in out and any(i.kind == "class" for i in items):
            out += ["::::", ""]
        return out


def setup(app: object) -> dict[str, object]:
    app.add_object_type("setting", "setting", "pair: %s; setting")  # type: ignore[attr-defined]
    app.add_object_type("check", "check", "pair: %s; system check")  # type: ignore[attr-defined]
    for name, directive in {
        "nexios-settings": SettingsDirective,
        "nexios-checks": ChecksDirective,
        "nexios-close-codes": CloseCodesDirective,
        "nexios-error-frames": ErrorFramesDirective,
        "nexios-metrics": MetricsDirective,
        "nexios-js": RoomsJsDirective,
    }.items():
        app.add_directive(name, directive)  # type: ignore[attr-defined]
    return {"parallel_read_safe": True, "version": "1"}
