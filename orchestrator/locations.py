"""YAML loading that remembers where every value came from.

PyYAML's composer keeps a ``Mark`` (line, column) on every node; we construct plain Python data
from the node tree ourselves and record each node's position under its path (a tuple of keys and
list indexes), so validation errors can say ``FILE:LINE:COLUMN``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from .errors import Problem
from .limits import MAX_DEPTH, MAX_YAML_NODES

Path = tuple[str | int, ...]


@dataclass
class SourceMap:
    """Positions (1-based line, column) of every key and value of a loaded document."""

    file: str
    values: dict[Path, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path, tuple[int, int]] = field(default_factory=dict)

    def locate(self, path: Sequence[str | int], *, key: bool = False) -> tuple[int, int]:
        """Position of ``path``, or of its nearest ancestor that exists (unknown keys, defaults)."""
        p = tuple(path)
        while True:
            table = self.keys if key and p in self.keys else self.values
            if p in table:
                return table[p]
            if not p:
                return (1, 1)
            p = p[:-1]

    def problem(self, path: Sequence[str | int], message: str, *, key: bool = False) -> Problem:
        line, col = self.locate(path, key=key)
        return Problem(self.file, line, col, message)


def _pos(node: yaml.Node) -> tuple[int, int]:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


class TooLarge(Exception):
    """The document expands beyond the limits (aliases used as a bomb, absurd nesting)."""

    def __init__(self, node: yaml.Node, message: str) -> None:
        super().__init__(message)
        self.position = _pos(node)


class _Builder:
    def __init__(self, smap: SourceMap, problems: list[Problem]) -> None:
        self.smap = smap
        self.problems = problems
        # Scalars are resolved by the safe constructor so "yes", "1.5", dates behave as in YAML.
        self.constructor = yaml.constructor.SafeConstructor()
        self.built = 0

    def build(self, node: yaml.Node, path: Path) -> Any:
        # An alias is built again wherever it is used: count every value built, so a few lines
        # of nested aliases cannot expand to billions.
        self.built += 1
        if self.built > MAX_YAML_NODES:
            raise TooLarge(node, f"the document expands to more than {MAX_YAML_NODES:,} values "
                                 "(aliases repeated inside aliases?)")  # fmt: skip
        if len(path) > MAX_DEPTH:
            raise TooLarge(node, f"values are nested more than {MAX_DEPTH} levels deep")
        self.smap.values[path] = _pos(node)
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    self.problems.append(
                        Problem(
                            self.smap.file, *_pos(key_node), "merge keys (<<) are not supported"
                        )
                    )
                    continue
                # Keys are names: take a scalar key as written, so YAML 1.1 does not turn
                # `on:` (as in a fallback's `on: [bounce]`) or `no:` into a boolean.
                if isinstance(key_node, yaml.ScalarNode):
                    key: Any = key_node.value
                else:
                    key = self.constructor.construct_object(key_node, deep=True)
                if not isinstance(key, str | int | bool) or key is None:
                    self.problems.append(
                        Problem(
                            self.smap.file,
                            *_pos(key_node),
                            f"keys must be text, got "
                            f"{key!r} (a value starting with '{{{{' must be quoted)",
                        )
                    )
                    continue
                key = str(key) if not isinstance(key, str) else key
                if key in out:
                    self.problems.append(
                        Problem(self.smap.file, *_pos(key_node), f"duplicate key {key!r}")
                    )
                self.smap.keys[(*path, key)] = _pos(key_node)
                out[key] = self.build(value_node, (*path, key))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self.constructor.construct_object(node, deep=True)


def load_yaml(text: str, file: str) -> tuple[Any, SourceMap, list[Problem]]:
    """Parse one YAML document: (data, source map, problems); data is None on syntax errors."""
    smap = SourceMap(file)
    problems: list[Problem] = []
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except RecursionError:
        return None, smap, [Problem(file, 1, 1, "YAML error: values are nested too deeply")]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = exc.problem or str(exc)
        if exc.context:
            what = f"{exc.context}: {what}"
        return None, smap, [Problem(file, line, col, f"YAML syntax error: {what}")]
    except yaml.YAMLError as exc:
        return None, smap, [Problem(file, 1, 1, f"YAML error: {exc}")]
    if node is None:
        return None, smap, [Problem(file, 1, 1, "the file is empty")]
    try:
        data = _Builder(smap, problems).build(node, ())
    except TooLarge as exc:
        return None, smap, [Problem(file, *exc.position, f"YAML error: {exc}")]
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        return None, smap, [Problem(file, line, col, f"YAML error: {exc.problem}")]
    return data, smap, problems
