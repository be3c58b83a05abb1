"""Which regimes apply to an incident, and why: the regimes its playbook names (through its
regulators and its jurisdictions), each decided by its ``applies_when`` condition over the
incident's facts and its audience counts, per region too.

A decision that needs the audience counts before they are known is *unknown*, never a guess.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from . import conditions
from .playbook import Playbook
from .regimes import Regime

#: the timeline kind that records the audience counts (total and per region)
COUNTED_KIND = "audience.counted"


class RegionCounts(dict[str, int]):
    """People per region, once counted: a region nobody in the audience lives in has 0."""

    def __missing__(self, key: str) -> int:
        return 0


@dataclass(frozen=True)
class Applicability:
    """Whether one regime applies (None: not known until the audience is counted), and why."""

    regime: str
    name: str
    applies: bool | None
    why: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"regime": self.regime, "name": self.name, "applies": self.applies,
                "why": self.why}  # fmt: skip


def count_regions(regions: Iterable[str | None]) -> tuple[int, dict[str, int]]:
    """Audience size and people per region (``US-CA`` also counts towards ``US``)."""
    total, counted = 0, Counter[str]()
    for region in regions:
        total += 1
        code = (region or "").strip().upper()
        if code:
            counted[code] += 1
            country, dash, _ = code.partition("-")
            if dash:
                counted[country] += 1
    return total, dict(sorted(counted.items()))


def recorded_counts(timeline: Iterable[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The latest audience counts an incident's timeline recorded, or None."""
    found = None
    for entry in timeline:
        if entry["kind"] == COUNTED_KIND:
            detail = entry["detail"]
            found = {"total": detail["total"], "regions": detail["regions"],
                     "locales": detail.get("locales") or {}}  # fmt: skip
    return found


def candidates(playbook: Playbook, regimes: Mapping[str, Regime]) -> dict[str, str]:
    """Regime id -> why the playbook brings it in (a regulator, or one of its jurisdictions)."""
    out: dict[str, str] = {}
    for regulator in playbook.regulators:
        if regulator.regime in regimes:
            out.setdefault(regulator.regime, f"regulator {regulator.id}")
    wanted = {j.lower() for j in playbook.jurisdictions}
    for key, regime in regimes.items():
        if regime.jurisdiction.lower() in wanted:
            out.setdefault(key, f"jurisdiction {regime.jurisdiction}")
    return out


def decide(
    regime_id: str,
    regime: Regime,
    facts: Mapping[str, Any],
    counts: Mapping[str, Any] | None,
    severity: str = "",
) -> Applicability:
    """Evaluate ``regime.applies_when`` (once per matching region with ``each_region``)."""
    if regime.applies_when is None:
        return Applicability(regime_id, regime.name, True, "no threshold")
    condition = conditions.parse(regime.applies_when)
    known = dict(counts or {})
    if known.get("regions") is not None:
        known["regions"] = RegionCounts(known["regions"])
    scope: dict[str, Any] = {"facts": dict(facts), "counts": known, "severity": severity}
    if regime.each_region is not None:
        regions = (counts or {}).get("regions")
        if regions is None:
            return Applicability(regime_id, regime.name, None, _unknown(regime.applies_when))
        passing = []
        for region, n in regions.items():
            if region.startswith(regime.each_region):
                scope["counts"] = {**scope["counts"], "region": n}
                if condition(scope):
                    passing.append(f"{region}: {n:,}")
        per = f"`{regime.applies_when}` per {regime.each_region}* region"
        if passing:
            return Applicability(regime_id, regime.name, True, f"{per}: " + ", ".join(passing))
        return Applicability(regime_id, regime.name, False, f"{per}: none")
    readings = condition.readings(scope)
    if any(v is None and name.startswith("counts") for name, v in readings.items()):
        return Applicability(regime_id, regime.name, None, _unknown(regime.applies_when))
    shown = ", ".join(f"{name} = {_show(v)}" for name, v in readings.items())
    verdict = condition(scope)
    why = f"`{regime.applies_when}` is {'true' if verdict else 'false'}" + (
        f" ({shown})" if shown else ""
    )
    return Applicability(regime_id, regime.name, verdict, why)


def applicable(
    playbook: Playbook,
    regimes: Mapping[str, Regime],
    facts: Mapping[str, Any],
    counts: Mapping[str, Any] | None,
) -> list[Applicability]:
    """Every regime the playbook brings in, decided; the reason starts with where it came from."""
    out = []
    for key, source in candidates(playbook, regimes).items():
        decision = decide(key, regimes[key], facts, counts, playbook.severity)
        out.append(Applicability(key, decision.name, decision.applies,
                                 f"{source}; {decision.why}"))  # fmt: skip
    return out


def _unknown(condition: str) -> str:
    return f"`{condition}`: not known until the audience is counted"


def _show(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else repr(value)
