"""The public plugin surface: built-in plugins reach the core only through ``orchestrator.plugin``.

Read statically (``ast``), so an import inside a function or under ``TYPE_CHECKING`` counts too.
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest

import orchestrator.plugin

ROOT = Path(__file__).parent.parent
CORE = ROOT / "orchestrator"
PLUGIN_FILES = sorted((ROOT / "plugins").glob("breach_*/**/*.py"))
HELPERS = ("files", "headings", "reasons", "reports", "textblocks")


def _is_surface(module: str) -> bool:
    return module == "orchestrator.plugin" or module.startswith("orchestrator.plugin.")


def _is_core(module: str) -> bool:
    return module == "orchestrator" or module.startswith("orchestrator.")


def imports(source: str) -> Iterator[tuple[int, str, list[str]]]:
    """(line, absolute module, names) of every import in ``source``; relative ones are skipped."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, []
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module, [alias.name for alias in node.names]


def surface_violations(source: str, where: str) -> list[str]:
    """``where:LINE: module`` for each import of the core other than the plugin surface, and
    for each name taken from ``orchestrator.plugin`` that it does not export."""
    found = []
    for line, module, names in imports(source):
        if _is_core(module) and not _is_surface(module):
            found.append(f"{where}:{line}: imports {module}")
        elif module == "orchestrator.plugin":
            found += [
                f"{where}:{line}: orchestrator.plugin does not export {name}"
                for name in names
                if name not in orchestrator.plugin.__all__ and name not in HELPERS
            ]
    return found


def test_builtin_plugins_import_the_core_only_through_the_plugin_surface() -> None:
    assert len(PLUGIN_FILES) > 20  # the glob found the plugins
    found = [
        problem
        for path in PLUGIN_FILES
        for problem in surface_violations(path.read_text("utf-8"), str(path.relative_to(ROOT)))
    ]
    assert not found, "plugins must import the core via orchestrator.plugin:\n" + "\n".join(found)


def test_the_check_sees_imports_anywhere_in_a_file() -> None:
    source = (
        "from orchestrator.plugin import Notifier\n"
        "from orchestrator.plugin.reasons import mask_reason\n"
        "import orchestrator.plugin.textblocks\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from orchestrator.ledger import Ledger\n"
        "def late():\n"
        "    import orchestrator.pluginhost\n"
        "    from orchestrator import hookimpl\n"
        "    from orchestrator.plugin import Campaign\n"
        "from . import sibling\n"
    )
    assert surface_violations(source, "x.py") == [
        "x.py:6: imports orchestrator.ledger",
        "x.py:8: imports orchestrator.pluginhost",
        "x.py:9: imports orchestrator",
        "x.py:10: orchestrator.plugin does not export Campaign",
    ]


def test_every_exported_name_resolves() -> None:
    assert orchestrator.plugin.__all__ == sorted(orchestrator.plugin.__all__)
    for name in orchestrator.plugin.__all__:
        assert getattr(orchestrator.plugin, name) is not None, name
    for helper in HELPERS:
        module = importlib.import_module(f"orchestrator.plugin.{helper}")
        for name in module.__all__:
            assert hasattr(module, name), f"orchestrator.plugin.{helper}.{name}"


def test_the_surface_is_what_the_core_defines() -> None:
    from orchestrator import hookimpl, hookspecs, notifier, receipts

    assert orchestrator.plugin.hookimpl is hookimpl is hookspecs.hookimpl
    assert orchestrator.plugin.Notifier is notifier.Notifier
    assert orchestrator.plugin.ReceiptUpdate is receipts.ReceiptUpdate


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolved_imports(path: Path) -> Iterator[tuple[int, str, list[str]]]:
    """(line, absolute module, names) of every import of a core module, relative ones
    resolved."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, []
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield node.lineno, target, [alias.name for alias in node.names]


@pytest.mark.parametrize(
    "path",
    sorted(CORE.rglob("*.py")),
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_core_modules_import_names_from_where_they_are_defined(path: Path) -> None:
    """Not from the package root (``from orchestrator import hookimpl``); and only the plugin
    surface itself imports the surface, so the core never depends on what it offers plugins."""
    inside_surface = _module_name(path).startswith("orchestrator.plugin")
    for line, module, names in _resolved_imports(path):
        where = f"{path.relative_to(ROOT)}:{line}"
        if module == "orchestrator":
            for name in names:
                is_module = (CORE / f"{name}.py").exists() or (CORE / name).is_dir()
                assert is_module, f"{where}: imports {name} from the package root"
        if _is_surface(module) or (module == "orchestrator" and "plugin" in names):
            assert inside_surface, f"{where}: the core imports the plugin surface"
