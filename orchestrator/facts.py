"""Incident facts: typed values declared by the playbook, given on the command line or by webhooks.

A fact arrives as text (``--fact affected_count=1200``, an alert label) or as JSON; it is coerced
to the type the playbook declares. Facts are data: they are never compiled as templates.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from .errors import FactError
from .limits import InputRejected, check_value
from .playbook import FactSpec, FactType

_TRUE = {"true", "yes", "y", "1", "on"}
_FALSE = {"false", "no", "n", "0", "off"}
_SAMPLES: dict[FactType, Any] = {
    "string": "sample text for validation",
    "integer": 12345,
    "number": 12345.5,
    "boolean": True,
    "datetime": datetime(2026, 1, 1, 9, 0, tzinfo=UTC),
    "list": ["sample item one", "sample item two"],
}

#: Fact names read for the breach's dates, in order of preference.
BREACH_START_FACTS = ("breach_started", "breach_started_at", "breach_start")
BREACH_END_FACTS = ("breach_ended", "breach_ended_at", "breach_end")


def coerce(name: str, value: Any, kind: FactType) -> Any:
    """Convert ``value`` to ``kind``; raise :class:`FactError` naming the fact and the type."""
    try:
        return _coerce(value, kind)
    except (TypeError, ValueError) as exc:
        raise FactError(f"fact {name!r}: {exc}") from None


def _coerce(value: Any, kind: FactType) -> Any:
    if value is None:
        return None
    if kind == "string":
        if isinstance(value, list | dict):
            raise ValueError(f"expected text, got {type(value).__name__}")
        return str(value)
    if kind == "integer":
        if isinstance(value, bool):
            raise ValueError("expected a whole number, got a boolean")
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"expected a whole number, got {value}")
        if isinstance(value, str):
            value = value.replace("_", "").replace(",", "").strip()
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ValueError(f"expected a whole number, got {value!r}") from None
    if kind == "number":
        if isinstance(value, bool):
            raise ValueError("expected a number, got a boolean")
        try:
            return float(str(value).replace("_", "").replace(",", ""))
        except ValueError:
            raise ValueError(f"expected a number, got {value!r}") from None
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError(f"expected true or false, got {value!r}")
    if kind == "datetime":
        if isinstance(value, datetime):
            moment = value
        else:
            try:
                moment = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
            except ValueError:
                raise ValueError(f"expected an ISO 8601 time, got {value!r}") from None
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    # list
    if isinstance(value, list):
        return [str(v) for v in value]
    text = str(value).strip()
    if text.startswith("["):
        parsed = json.loads(text)
        if not isinstance(parsed, list):
            raise ValueError("expected a list")
        return [str(v) for v in parsed]
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_assignments(pairs: list[str]) -> dict[str, str]:
    """``["a=1", "b=x=y"]`` -> ``{"a": "1", "b": "x=y"}``; a pair without ``=`` is an error."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise FactError(f"--fact {pair!r}: write it as name=value")
        out[key.strip()] = value
    return out


def check_values(given: Mapping[str, Any]) -> None:
    """Refuse values no ledger, outbox or report could hold: nested absurdly deep, or text that
    is not valid Unicode (a lone surrogate from a JSON escape)."""
    for name, value in given.items():
        try:
            check_value(value, f"fact {name!r}")
        except InputRejected as exc:
            raise FactError(str(exc)) from None


def resolve(specs: Mapping[str, FactSpec], given: Mapping[str, Any]) -> dict[str, Any]:
    """Typed facts: declared ones coerced (defaults filled, required checked), others kept."""
    check_values(given)
    facts: dict[str, Any] = {}
    missing = []
    for name, spec in specs.items():
        if name in given and given[name] is not None:
            facts[name] = coerce(name, given[name], spec.type)
        elif spec.default is not None:
            facts[name] = coerce(name, spec.default, spec.type)
        elif spec.required:
            missing.append(name)
        else:
            facts[name] = None
    if missing:
        raise FactError(
            "missing required fact(s): "
            + ", ".join(missing)
            + " (give them with --fact NAME=VALUE)"
        )
    for name, value in given.items():
        facts.setdefault(name, value)
    return facts


def samples(specs: Mapping[str, FactSpec]) -> dict[str, Any]:
    """Facts for rendering templates at validation time: example, else default, else a sample."""
    out: dict[str, Any] = {}
    for name, spec in specs.items():
        value = spec.example if spec.example is not None else spec.default
        out[name] = coerce(name, value, spec.type) if value is not None else _SAMPLES[spec.type]
    return out


def jsonable(values: Mapping[str, Any]) -> dict[str, Any]:
    """Facts as the ledger stores them (JSON): datetimes as ISO 8601 text."""
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in values.items()}
