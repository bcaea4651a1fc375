"""How the package hangs together: no import cycle, layers that point down, one vocabulary,
and a public surface that is exactly ``__all__`` (httpx's test_exported_members, in spirit).

Imports are read from the source (AST), including those inside functions; only imports
under ``if TYPE_CHECKING:`` are left out, since they never run.
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import runstop_nb
from runstop_nb import _history, _lifecycle, _status, _widget

PACKAGE = Path(runstop_nb.__file__).parent

# Every module belongs to one layer; a module imports only from its own layer or below.
LAYERS = {
    "core": 0,
    "history": 1,
    "ui": 2,
    "top": 3,
}
HISTORY = {"_record", "_history", "_recorder", "_pastrun", "_janitor"}
UI = {"_renderer", "_widget", "_grid", "_listing", "_magics", "_cli", "_clistop", "_pulse", "_runstate", "_viewset"}


def layer(module: str) -> int:
    name = module.split(".")[1] if "." in module else module
    if module == "runstop_nb":
        return LAYERS["top"]
    if name in UI:
        return LAYERS["ui"]
    if name in HISTORY:
        return LAYERS["history"]
    return LAYERS["core"]


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _type_checking_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """The package modules ``module`` imports, anywhere in its code (not under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text())
    skip = _type_checking_lines(tree)
    is_package = path.name == "__init__.py"
    base = module.split(".") if is_package else module.split(".")[:-1]
    found = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - node.level + 1]
                prefix = ".".join(anchor + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            targets = [prefix] + [f"{prefix}.{a.name}" for a in node.names]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != module and target != "runstop_nb":
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {m: imports_of(m, p, known) for m, p in mods.items()}


def test_no_import_cycle_in_the_package() -> None:
    edges = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_layers_only_point_down() -> None:
    wrong = [(m, t) for m, targets in graph().items() for t in targets if layer(t) > layer(m)]
    assert not wrong, "a lower layer imports a higher one: " + ", ".join(f"{m} -> {t}" for m, t in wrong)


def test_the_core_imports_no_widget_and_no_sqlite() -> None:
    for module, path in modules().items():
        if layer(module) == LAYERS["core"] and module != "runstop_nb":
            source = path.read_text()
            assert not re.search(r"^\s*(import|from) (ipywidgets|anywidget|sqlite3)\b", source, re.M), module


def test_the_process_layer_imports_only_the_standard_library_and_itself() -> None:
    """The warden and guards load ``_proc`` as a top-level package with ``python -I -S``."""
    for module, path in modules().items():
        if module.startswith("runstop_nb._proc"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and not node.level:
                    assert node.module not in (None, "runstop_nb") and not (node.module or "").startswith(
                        "runstop_nb"), f"{module} imports {node.module}"
                if isinstance(node, ast.Import):
                    for alias in node.names:
                        assert not alias.name.startswith("runstop_nb"), f"{module} imports {alias.name}"


def test_every_status_and_reason_is_defined_once_and_everyone_agrees() -> None:
    # The lifecycle's live statuses are the vocabulary's first six.
    assert [s.value for s in _lifecycle.RunStatus] == [s for s in _status.STATUSES if s not in _status.JUDGED]
    assert {s.value for s in _lifecycle.TERMINAL} == set(_status.TERMINAL)
    # The badges cover every status, and nothing else.
    assert set(_widget.BADGES) == set(_status.STATUSES)
    # The history's SQL for "live" is built from the vocabulary.
    assert ", ".join(f"'{s}'" for s in _status.LIVE) == _history._LIVE_SQL
    # No other module spells a status tuple of its own.
    pattern = re.compile(r"\(\s*\"(running|stopping)\",\s*\"(running|stopping|orphaned|completed)\"")
    offenders = [m for m, p in modules().items() if m != "runstop_nb._status" and pattern.search(p.read_text())]
    assert not offenders, f"status tuples spelled out outside _status: {offenders}"


def test_exported_members_are_exactly_all() -> None:
    public = {name for name in dir(runstop_nb) if not name.startswith("_")}
    public -= {"annotations", "Any", "kernel_state", "errors"}  # imports, not API
    public -= {"load_ipython_extension", "unload_ipython_extension"}  # IPython's hooks, not API
    public = {n for n in public if not inspect.ismodule(getattr(runstop_nb, n))}
    assert public == set(runstop_nb.__all__) - {"__version__"}


def test_public_functions_return_and_raise_exported_types() -> None:
    exported = set(runstop_nb.__all__)
    for name in ("RunRecord", "PastRun", "Records", "HistoryError", "StopResult", "Survivor", "Run"):
        assert name in exported, name


def test_the_version_is_written_once() -> None:
    root = PACKAGE.parent
    pyproject = (root / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject and not re.search(r'^version\s*=', pyproject, re.M)
    assert re.match(r"\d+\.\d+\.\d+", runstop_nb.__version__)
