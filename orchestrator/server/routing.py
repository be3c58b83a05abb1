"""Routing rules: which route a payload takes, and the facts it carries.

A payload is seen as a *view*: a nested mapping read with dotted paths. An Alertmanager alert's
view has ``labels.*``, ``annotations.*``, ``status``, ``startsAt``, ``fingerprint`` and the
group's ``receiver``, ``groupKey``, ``groupLabels.*``, ``commonLabels.*``,
``commonAnnotations.*``, ``externalURL``; a generic payload's view is its JSON object (a leading
``$.`` is accepted, list items are numbered: ``items.0.id``).

A matcher tests one path: equality (``"x"``), one of a list (``["a", "b"]``), a regular
expression matched against the whole value (``{ regex = "..." }``, anchored like Alertmanager's
matchers), or a severity at least some level (``{ at_least = "high" }``). A missing path never
matches.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from .. import facts as facts_mod
from ..errors import FactError

if TYPE_CHECKING:
    from .config import Route

MATCHER_KEYS = frozenset({"equals", "regex", "at_least"})
MatcherKind = Literal["equals", "one_of", "regex", "at_least"]


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


MISSING: Any = _Missing()


def normalise_path(path: str) -> tuple[str, ...]:
    """``"$.a.b"``, ``"a.b"`` -> ``("a", "b")``."""
    text = path.strip()
    if text.startswith("$"):
        text = text[1:]
    return tuple(part for part in text.split(".") if part)


def lookup(view: Any, path: str | Sequence[str]) -> Any:
    """The value at ``path`` in ``view``, or :data:`MISSING`."""
    parts = normalise_path(path) if isinstance(path, str) else path
    for part in parts:
        if isinstance(view, Mapping) and part in view:
            view = view[part]
        elif isinstance(view, list) and part.isascii() and part.isdigit() and int(part) < len(view):
            view = view[int(part)]
        else:
            return MISSING
    return view


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass(frozen=True)
class Matcher:
    """One condition of a route on one path of the view."""

    path: str
    kind: MatcherKind
    expected: Any
    pattern: re.Pattern[str] | None = None
    order: tuple[str, ...] = ()

    def failure(self, view: Any) -> str | None:
        """None when the view matches; otherwise why not (for ``routes test``)."""
        value = lookup(view, self.path)
        if value is MISSING or value is None:
            return f"{self.path} is absent"
        if isinstance(value, dict | list):
            return f"{self.path} is a {type(value).__name__}, not a single value"
        text = _text(value)
        if self.kind == "equals":
            return None if text == _text(self.expected) else f"{self.path} is {text!r}, not " \
                f"{_text(self.expected)!r}"  # fmt: skip
        if self.kind == "one_of":
            options = [_text(v) for v in self.expected]
            return None if text in options else f"{self.path} is {text!r}, not one of {options}"
        if self.kind == "regex":
            assert self.pattern is not None
            if self.pattern.fullmatch(text):
                return None
            return f"{self.path} is {text!r}, which does not match /{self.pattern.pattern}/"
        level = text.strip().lower()
        if level not in self.order:
            return f"{self.path} is {text!r}, not a known severity ({', '.join(self.order)})"
        if self.order.index(level) >= self.order.index(self.expected):
            return None
        return f"{self.path} is {text!r}, below {self.expected!r}"


def compile_matcher(path: str, rule: Any, order: Sequence[str]) -> Matcher:
    """A matcher from its config form; ValueError says what is wrong with it."""
    if not normalise_path(path):
        raise ValueError("an empty path; write e.g. labels.severity")
    if isinstance(rule, str | int | float | bool):
        return Matcher(path, "equals", rule)
    if isinstance(rule, list):
        if not rule or not all(isinstance(v, str | int | float | bool) for v in rule):
            raise ValueError("a list matches one of its values: give one or more plain values")
        return Matcher(path, "one_of", tuple(rule))
    if not isinstance(rule, dict):
        raise ValueError("write a value, a list of values, { regex = \"...\" } or "
                         "{ at_least = \"high\" }")  # fmt: skip
    keys = set(rule)
    if len(keys) != 1 or not keys <= MATCHER_KEYS:
        raise ValueError(f"use exactly one of {', '.join(sorted(MATCHER_KEYS))} "
                         f"(got {', '.join(sorted(map(str, keys))) or 'nothing'})")  # fmt: skip
    kind, value = next(iter(rule.items()))
    if kind == "equals":
        if not isinstance(value, str | int | float | bool):
            raise ValueError("equals takes a plain value")
        return Matcher(path, "equals", value)
    if not isinstance(value, str):
        raise ValueError(f"{kind} takes a string")
    if kind == "regex":
        try:
            return Matcher(path, "regex", value, pattern=re.compile(value))
        except re.error as exc:
            raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
    levels = tuple(order)
    if value.lower() not in levels:
        raise ValueError(f"unknown severity {value!r}; levels, lowest first: {', '.join(levels)} "
                         "(change them with [server] severity_order)")  # fmt: skip
    return Matcher(path, "at_least", value.lower(), order=levels)


def first_failure(matchers: Sequence[Matcher], view: Any) -> str | None:
    """Why ``view`` fails the first failing matcher, or None when all pass."""
    for matcher in matchers:
        reason = matcher.failure(view)
        if reason is not None:
            return reason
    return None


@dataclass(frozen=True)
class Selection:
    """The route a payload takes, and which of its views (alerts) matched it first."""

    route: Route
    view: int


def select(routes: Sequence[Route], views: Sequence[Any]) -> tuple[Selection | None, list[str]]:
    """The first route (in config order) that matches any view; else None and why each failed."""
    tried: list[str] = []
    for route in routes:
        reasons = []
        for index, view in enumerate(views):
            reason = first_failure(route.matchers, view)
            if reason is None:
                return Selection(route, index), tried
            reasons.append(reason)
        tried.append(f"{route.name}: {reasons[0] if reasons else 'no alert to match'}")
    return None, tried


def mapped_facts(route: Route, view: Any) -> dict[str, Any]:
    """The route's facts taken from ``view``, coerced to the playbook's types.

    Absent paths and empty strings (Prometheus's "no label") are left out, so the playbook's
    default applies. A value that does not convert raises FactError naming fact and path.
    """
    out: dict[str, Any] = {}
    specs = route.playbook.facts
    for name, path in route.facts.items():
        value = lookup(view, path)
        if value is MISSING or value is None or value == "":
            continue
        if name in specs:
            try:
                value = facts_mod.coerce(name, value, specs[name].type)
            except FactError as exc:
                raise FactError(f"{exc} (taken from {path})") from None
        elif isinstance(value, dict | list):
            raise FactError(f"fact {name!r} (taken from {path}): expected a single value")
        out[name] = value
    return out


def resolve_facts(route: Route, given: Mapping[str, Any]) -> dict[str, Any]:
    """All facts of a new incident: the mapped ones plus the playbook's defaults."""
    missing = [name for name, spec in route.playbook.facts.items()
               if spec.required and spec.default is None and given.get(name) is None]  # fmt: skip
    if missing:
        where = [f"{n} (from {route.facts[n]})" if n in route.facts else n for n in missing]
        raise FactError(
            f"the payload does not carry required fact(s) {', '.join(where)} of playbook "
            f"{route.playbook.id!r}: add them to the alert, or map them in {route.label}.facts"
        )
    facts = facts_mod.resolve(route.playbook.facts, given)
    for param, fact in route.audience.bind.items():
        if facts.get(fact) is None:
            origin = f" (from {route.facts[fact]})" if fact in route.facts else ""
            raise FactError(
                f"audience {route.audience.name!r} binds :{param} to fact {fact!r}{origin}, which "
                "this payload does not carry: without it the audience cannot be selected"
            )
    return facts


def awareness(route: Route, view: Any, received: datetime) -> datetime:
    """When the organisation became aware: the route's ``aware_at`` path, else receipt time.

    Alertmanager's zero time (year 1) and times in the future fall back to the receipt time.
    """
    if route.aware_at is None:
        return received
    value = lookup(view, route.aware_at)
    if value is MISSING or value in (None, ""):
        return received
    moment: datetime = facts_mod.coerce(f"aware_at (from {route.aware_at})", value, "datetime")
    if moment.year < 1971 or moment > received:
        return received
    return moment.astimezone(UTC)
