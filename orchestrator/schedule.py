"""When things are due: regulator deadlines and step times, from the incident's events."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from .clocks import regime_due
from .playbook import BeforeDeadline, Playbook, Step
from .regimes import Deadline, Regime


def regulator_deadline(
    playbook: Playbook, regulator_id: str, regimes: dict[str, Regime]
) -> Deadline | None:
    regulator = playbook.regulator(regulator_id)
    if regulator is None:
        return None
    if regulator.deadline is not None:
        return regulator.deadline
    regime = regimes.get(regulator.regime)
    return regime.deadline if regime is not None else None


def deadlines(
    playbook: Playbook,
    aware_at: datetime,
    regimes: dict[str, Regime],
    events: Mapping[str, datetime] | None = None,
) -> dict[str, datetime | None]:
    """Regulator id -> the instant (UTC) its report falls due; None when the law sets no fixed
    clock or the event that starts it (``events``, by name) has not happened yet.

    Without ``events`` only awareness (and discovery, the same moment) has happened.
    """
    happened = dict(events or {"aware": aware_at, "discovered": aware_at})
    out: dict[str, datetime | None] = {}
    for regulator in playbook.regulators:
        regime = regimes.get(regulator.regime)
        due = None
        if regime is not None:
            start = happened.get(regime.start_event)
            due = regime_due(regime, start, regulator.deadline) if start else None
        elif regulator.deadline is not None:
            # A regulator outside the table with its own deadline runs from awareness, in UTC.
            due = regime_due(Regime(name=regulator.regime, notifies=regulator.name,
                                    deadline=regulator.deadline), aware_at)  # fmt: skip
        out[regulator.id] = due.astimezone(UTC) if due is not None else None
    return out


def due_at(step: Step, aware_at: datetime, due: dict[str, datetime | None]) -> datetime:
    """The instant ``step`` fires. A deadline-relative step with no fixed deadline fires at once."""
    at = step.at
    if isinstance(at, timedelta):
        return aware_at + at
    if isinstance(at, datetime):
        return at
    assert isinstance(at, BeforeDeadline)
    deadline = due.get(at.before_deadline)
    return aware_at if deadline is None else max(aware_at, deadline - at.margin)


def ordered_steps(
    playbook: Playbook, aware_at: datetime, due: dict[str, datetime | None]
) -> list[tuple[Step, datetime]]:
    """Steps with their due times, earliest first (playbook order breaks ties); ``on_update``
    steps are left out: they fire when the incident is updated, never at trigger."""
    timed = [(step, due_at(step, aware_at, due)) for step in playbook.trigger_steps]
    return sorted(timed, key=lambda pair: pair[1])
