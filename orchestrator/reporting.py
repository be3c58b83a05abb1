"""What a report to a regulator must state, checked against an incident before it is filed.

Each regime lists its report items with where each comes from (``report_items`` in the regimes
table): an expression over the incident's ``facts``, its audience ``counts``, its ``notice`` (as
regulators read it, in the playbook's default locale), the ``organisation``, the ``incident``
and ``notified`` (people reached so far, from the ledger). An item whose source gives nothing
(no value, or empty text) is missing and named: a report never states it blank.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from . import conditions
from .regimes import Regime


@dataclass(frozen=True)
class ItemCheck:
    """One report item: where it comes from, and what the incident gives for it."""

    item: str
    source: str
    value: Any
    missing: bool

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (times as ISO 8601)."""
        value = self.value.isoformat() if isinstance(self.value, datetime) else self.value
        return {"item": self.item, "source": self.source, "value": value,
                "missing": self.missing}  # fmt: skip


def check_items(regime: Regime, scope: Mapping[str, Any]) -> list[ItemCheck]:
    """Every report item of ``regime`` read from ``scope``; items without a source are kept by
    hand and never count as missing."""
    out = []
    for item, source in regime.report_items.items():
        if not source:
            out.append(ItemCheck(item, "", None, False))
            continue
        value = conditions.parse(source).evaluate(scope)
        missing = value is None or (isinstance(value, str | list | dict) and not value)
        out.append(ItemCheck(item, source, value, missing))
    return out
