"""Statutory clocks: when a regime's deadline falls due, counted from the event that starts it.

Hours are elapsed time (weekends and daylight-saving changes count as they pass). Day-based
units (calendar days, business days, months) count whole days after the day of the event, in the
regime's time zone, and end at the end of the last day there: "within 30 days" of an event at
any hour on 1 March ends at 23:59:59 local time on 31 March. Business days skip Saturdays,
Sundays and the public holidays of the regime's jurisdiction. A month later is the same day of
the next month, or its last day when that month is shorter (31 January -> 28 February).

Incidents record the events that start clocks (``determined``, ``assessed``, ``filed:REGIME``)
on their timeline; a clock whose event has not happened is *waiting*.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from .errors import BreachError
from .regimes import CLOCK_EVENTS, Deadline, Regime, holiday_calendar

#: the timeline kind of an event that starts clocks
EVENT_KIND = "incident.event"
#: the end of a day, as deadlines print it
END_OF_DAY = time(23, 59, 59)

ClockState = Literal["running", "overdue", "waiting", "no fixed deadline"]


def due_at(
    deadline: Deadline,
    start: datetime,
    *,
    zone: ZoneInfo | None = None,
    holidays: str | None = None,
) -> datetime | None:
    """The moment ``deadline`` falls due for a clock started at ``start`` (aware), in ``zone``
    (default UTC); None when the law sets no fixed clock."""
    if start.tzinfo is None:
        raise ValueError("a clock starts at an aware datetime")
    zone = zone or ZoneInfo("UTC")
    if deadline.unit == "none":
        return None
    if deadline.unit == "hours":
        # Elapsed hours: add in UTC, then show in the regime's zone (DST-correct).
        return (start.astimezone(UTC) + timedelta(hours=deadline.amount)).astimezone(zone)
    day = start.astimezone(zone).date()
    if deadline.unit == "calendar_days":
        last = day + timedelta(days=deadline.amount)
    elif deadline.unit == "months":
        last = add_months(day, deadline.amount)
    else:
        last = add_business_days(day, deadline.amount, holidays)
    return datetime.combine(last, END_OF_DAY, tzinfo=zone)


def add_months(day: date, months: int) -> date:
    """The same day ``months`` later, or that month's last day when it is shorter."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def add_business_days(day: date, count: int, holidays: str | None) -> date:
    """The ``count``-th business day after ``day`` (weekends and the public holidays of the
    ``holidays`` jurisdiction skipped)."""
    closed = holiday_calendar(holidays) if holidays else None
    left = count
    while left:
        day += timedelta(days=1)
        if day.weekday() < 5 and (closed is None or day not in closed):
            left -= 1
    return day


def regime_due(
    regime: Regime, start: datetime, deadline: Deadline | None = None
) -> datetime | None:
    """When ``regime`` (or ``deadline``, a playbook's override of it) falls due from ``start``."""
    return due_at(deadline or regime.deadline, start, zone=regime.zone, holidays=regime.holidays)


def event_name(name: str) -> str:
    """Check an event name a commander gives: one that starts a clock, or ``filed:REGIME``.
    Awareness is not among them: it is the incident's ``aware_at``, which its steps count from.
    """
    recordable = [e for e in CLOCK_EVENTS.values() if e != "aware"]
    if name in recordable or (name.startswith("filed:") and len(name) > 6):
        return name
    if name == "aware":
        raise BreachError("awareness is the incident's aware_at, set when it was triggered")
    raise BreachError(f"unknown event {name!r}: use one of {', '.join(recordable)}, filed:REGIME")


def started(aware_at: datetime, timeline: Iterable[Mapping[str, Any]]) -> dict[str, datetime]:
    """Event name -> when it happened, from an incident's timeline (the latest record of an
    event wins: a correction replaces an earlier time). Awareness is the incident's
    ``aware_at``; discovery is awareness unless recorded separately."""
    out = {"aware": aware_at, "discovered": aware_at}
    for entry in timeline:
        if entry["kind"] == EVENT_KIND:
            detail = entry["detail"]
            out[detail["event"]] = datetime.fromisoformat(detail["occurred_at"])
    return out


@dataclass(frozen=True)
class Clock:
    """One regime's clock on one incident."""

    regime: str
    name: str
    rule: str
    event: str
    started_at: datetime | None
    due_at: datetime | None
    state: ClockState

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: times as ISO 8601 with the regime's offset."""
        return {
            "regime": self.regime, "name": self.name, "rule": self.rule, "event": self.event,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "due_at": self.due_at.isoformat() if self.due_at else None, "state": self.state,
        }  # fmt: skip


def clock(
    regime_id: str,
    regime: Regime,
    events: Mapping[str, datetime],
    current: datetime,
    deadline: Deadline | None = None,
) -> Clock:
    """The state of ``regime``'s clock given the events that happened so far."""
    event = regime.start_event
    rule = f"{deadline or regime.deadline} from {event}"
    start = events.get(event)
    if start is None:
        return Clock(regime_id, regime.name, rule, event, None, None, "waiting")
    due = regime_due(regime, start, deadline)
    state: ClockState = (
        "no fixed deadline" if due is None else "overdue" if due < current else "running"
    )
    return Clock(regime_id, regime.name, rule, event, start.astimezone(regime.zone), due, state)


#: channels that reach a regulator or the public, not the people affected one by one
NOT_INDIVIDUAL_CHANNELS = frozenset({"regulator", "announcement"})


def late_steps(
    steps: Iterable[tuple[str, str, datetime | None]],
    clocks: Iterable[Clock],
    individual: Iterable[str],
) -> list[str]:
    """Warnings for steps to people (``(step id, channel, due)``) due after the deadline of an
    individual-notice regime (ids in ``individual``) whose clock runs."""
    owed = [c for c in clocks if c.regime in set(individual) and c.due_at is not None]
    out = []
    for step_id, channel, due in steps:
        if due is None or channel in NOT_INDIVIDUAL_CHANNELS:
            continue
        for c in owed:
            assert c.due_at is not None
            if due > c.due_at:
                out.append(f"step {step_id} is due {due.astimezone(c.due_at.tzinfo).isoformat()}, "
                           f"after the {c.regime} deadline ({c.due_at.isoformat()})")  # fmt: skip
    return out
