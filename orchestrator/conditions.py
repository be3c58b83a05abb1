"""The condition language of steps: small, safe Python-like expressions over data.

``counts.unreachable > 500``, ``facts.credentials_exposed and severity == "critical"``,
``not recipient.attrs.credentials_breached``, ``counts.regions['US-CA'] > 500``. Only comparisons,
boolean logic, arithmetic on numbers, literals, ``in``, dotted names and a literal key after a
dotted name are allowed: no calls, no computed subscripts, no dunder access.
The expression is parsed once; evaluating it walks a whitelisted tree.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: b is not None and a in b,
    ast.NotIn: lambda a, b: b is None or a not in b,
}
_ARITH: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Mod: operator.mod,
}


class ConditionError(ValueError):
    """The expression is not valid in the condition language; ``column`` is 1-based."""

    def __init__(self, message: str, column: int = 1) -> None:
        super().__init__(message)
        self.column = column


@dataclass(frozen=True)
class Condition:
    """A parsed expression. ``names`` holds every dotted name it reads (``facts.x``)."""

    source: str
    tree: ast.expr
    names: frozenset[str]

    def evaluate(self, scope: Mapping[str, Any]) -> Any:
        """Evaluate against ``scope``; a missing name reads as None (never raises on data)."""
        return _eval(self.tree, scope)

    def __call__(self, scope: Mapping[str, Any]) -> bool:
        return bool(self.evaluate(scope))

    def readings(self, scope: Mapping[str, Any]) -> dict[str, Any]:
        """What each name (and each literal key) it reads holds in ``scope``, by its source
        text: ``{"counts.regions['US-CA']": 812}``, so a decision can say why."""
        out: dict[str, Any] = {}
        keyed: set[str | None] = set()
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Subscript):
                out[ast.unparse(node)] = _eval(node, scope)
                keyed.add(_dotted(node.value))
        for name in sorted(self.names - keyed - _LITERAL_NAMES):
            out[name] = _eval(ast.parse(name, mode="eval").body, scope)
        return out


#: names that read as literals rather than data
_LITERAL_NAMES = frozenset({"true", "false", "null", "none"})


def parse(source: str) -> Condition:
    """Parse and whitelist-check; raise :class:`ConditionError` with the column of the problem."""
    try:
        tree = ast.parse(source.strip(), mode="eval").body
    except SyntaxError as exc:
        raise ConditionError(f"syntax error in condition: {exc.msg}", exc.offset or 1) from None
    names: set[str] = set()
    for node in ast.walk(tree):
        _check(node)
        if isinstance(node, ast.Attribute | ast.Name):
            dotted = _dotted(node)
            if dotted is not None:
                names.add(dotted)
    # Keep only the longest names: {"facts.a"} not {"facts", "facts.a"}.
    longest = {n for n in names if not any(o.startswith(n + ".") for o in names)}
    return Condition(source, tree, frozenset(longest))


_ALLOWED = (
    ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.UAdd, ast.Compare,
    ast.BinOp, ast.Name, ast.Attribute, ast.Constant, ast.List, ast.Tuple, ast.Load,
    ast.Subscript, *_COMPARE, *_ARITH,
)  # fmt: skip


def _check(node: ast.AST) -> None:
    column = getattr(node, "col_offset", 0) + 1
    if not isinstance(node, _ALLOWED):
        what = type(node).__name__
        hint = " (calls are not allowed)" if isinstance(node, ast.Call) else ""
        raise ConditionError(f"{what} is not allowed in a condition{hint}", column)
    if isinstance(node, ast.Attribute | ast.Name):
        ident = node.attr if isinstance(node, ast.Attribute) else node.id
        if ident.startswith("_"):
            raise ConditionError(f"names starting with '_' are not allowed: {ident!r}", column)
    if isinstance(node, ast.Attribute) and _dotted(node) is None:
        raise ConditionError("attributes may only follow names: write facts.name", column)
    if isinstance(node, ast.Subscript) and (
        _dotted(node.value) is None
        or not isinstance(node.slice, ast.Constant)
        or not isinstance(node.slice.value, str | int)
    ):
        raise ConditionError(
            "a key may only be a literal after a name: write counts.regions['US-CA']", column
        )


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return None if base is None else f"{base}.{node.attr}"
    return None


def _lookup(value: Any, key: str) -> Any:
    if value is None:
        return None
    if isinstance(value, Mapping):
        return value.get(key)
    return getattr(value, key, None)


def _eval(node: ast.expr, scope: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in _LITERAL_NAMES:
            return {"true": True, "false": False}.get(node.id)
        return scope.get(node.id)
    if isinstance(node, ast.Attribute):
        return _lookup(_eval(node.value, scope), node.attr)
    if isinstance(node, ast.Subscript):
        assert isinstance(node.slice, ast.Constant)  # parse() allows literal keys only
        container = _eval(node.value, scope)
        if not isinstance(container, Mapping):
            return None
        try:  # indexing (not .get) lets a mapping answer for absent keys, e.g. 0 people
            return container[node.slice.value]
        except (KeyError, TypeError):
            return None
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.And):
            result: Any = True
            for value in node.values:
                result = _eval(value, scope)
                if not result:
                    return result
            return result
        result = False
        for value in node.values:
            result = _eval(value, scope)
            if result:
                return result
        return result
    if isinstance(node, ast.UnaryOp):
        operand = _eval(node.operand, scope)
        if isinstance(node.op, ast.Not):
            return not operand
        if operand is None:
            return None
        return -operand if isinstance(node.op, ast.USub) else +operand
    if isinstance(node, ast.Compare):
        left = _eval(node.left, scope)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = _eval(comparator, scope)
            try:
                ok = _COMPARE[type(op)](left, right)
            except TypeError:
                return False  # e.g. None > 500: unknown data never satisfies an ordering
            if not ok:
                return False
            left = right
        return True
    if isinstance(node, ast.BinOp):
        a, b = _eval(node.left, scope), _eval(node.right, scope)
        try:
            return _ARITH[type(node.op)](a, b)
        except (TypeError, ZeroDivisionError):
            return None
    if isinstance(node, ast.List | ast.Tuple):
        return [_eval(e, scope) for e in node.elts]
    raise ConditionError(f"{type(node).__name__} is not allowed in a condition")
