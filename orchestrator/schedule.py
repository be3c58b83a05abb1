"""When things are due: regulator deadlines and step times, from the incident's ``aware_at``."""

from __future__ import annotations

from datetime import datetime, timedelta

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
    playbook: Playbook, aware_at: datetime, regimes: dict[str, Regime]
) -> dict[str, datetime | None]:
    """Regulator id -> the instant its report falls due (None: "without undue delay")."""
    out: dict[str, datetime | None] = {}
    for regulator in playbook.regulators:
        deadline = regulator_deadline(playbook, regulator.id, regimes)
        out[regulator.id] = deadline.due(aware_at) if deadline is not None else None
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
    """Steps with their due times, earliest first (playbook order breaks ties)."""
    timed = [(step, due_at(step, aware_at, due)) for step in playbook.steps]
    return sorted(timed, key=lambda pair: pair[1])
