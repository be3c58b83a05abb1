"""The layering, read statically from the source: no import cycle, no SDK in the core.

Every ``import`` counts, at module level or inside a function, except those under
``if TYPE_CHECKING:`` (they never run). A module importing ``a.b.c`` (or ``c`` from ``a.b``)
depends on the nearest module of the tree that name starts with.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SDKS = ("twilio", "sendgrid", "firebase_admin", "google")


def source_modules() -> dict[str, Path]:
    """Dotted module name -> file, for orchestrator/ and every built-in plugin package."""
    packages = [ROOT / "orchestrator", *sorted((ROOT / "plugins").glob("breach_*"))]
    modules: dict[str, Path] = {}
    for package in packages:
        for file in package.rglob("*.py"):
            parts = list(file.relative_to(package.parent).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = file
    return modules


def _guarded(tree: ast.AST) -> set[int]:
    """The ids of nodes under ``if TYPE_CHECKING:``."""
    hidden: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
            if name == "TYPE_CHECKING":
                hidden.update(id(inner) for inner in ast.walk(node))
    return hidden


def imported_names(module: str, file: Path) -> Iterator[tuple[str, int]]:
    """Every name ``module`` imports (absolute, dotted), with its line."""
    tree = ast.parse(file.read_text("utf-8"))
    hidden = _guarded(tree)
    package = module if file.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if id(node) in hidden:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            # `from a import b` depends on a.b when that is a module, else on a itself
            for alias in node.names:
                yield f"{base}.{alias.name}", node.lineno


def dependency_graph() -> dict[str, set[str]]:
    """Module -> the modules of the tree it imports."""
    modules = source_modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, file in modules.items():
        for target, _line in imported_names(name, file):
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_checker_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_no_import_cycle_in_the_core_or_the_plugins() -> None:
    graph = dependency_graph()
    assert "orchestrator.session" in graph and "breach_twilio.notifiers" in graph
    assert cycles(graph) == []


def test_the_core_never_imports_a_provider_sdk() -> None:
    offending = [
        f"{file.relative_to(ROOT)}:{line}: imports {name}"
        for module, file in source_modules().items()
        if module.startswith("orchestrator")
        for name, line in imported_names(module, file)
        if name.split(".")[0] in SDKS
    ]
    assert offending == []
