"""Statutory notification regimes and their deadlines, as overridable data.

The built-in table (``data/regimes.yaml``) summarises ../legal texts for planning; it is not legal
advice. ``deadline_for`` turns a regime's clock into a UTC instant from the incident's start.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

DeadlineUnit = Literal["hours", "calendar_days", "business_days", "none"]


class Deadline(BaseModel):
    """``amount`` units after the clock starts; unit ``none`` means "without undue delay"."""

    model_config = ConfigDict(extra="forbid")
    amount: int = Field(ge=0)
    unit: DeadlineUnit

    def due(self, start: datetime) -> datetime | None:
        """The instant this deadline falls due, or None when the law sets no fixed clock."""
        if self.unit == "none":
            return None
        if self.unit == "hours":
            return start + timedelta(hours=self.amount)
        if self.unit == "calendar_days":
            return start + timedelta(days=self.amount)
        # Business days: skip Saturdays and Sundays (public holidays are the team's override).
        due, left = start, self.amount
        while left:
            due += timedelta(days=1)
            if due.weekday() < 5:
                left -= 1
        return due

    def __str__(self) -> str:
        if self.unit == "none":
            return "without undue delay"
        return f"{self.amount} {self.unit.replace('_', ' ')}"


class Regime(BaseModel):
    """One statute's notification duty."""

    model_config = ConfigDict(extra="forbid")
    name: str
    notifies: str
    deadline: Deadline
    clock: str = "awareness"
    phased: bool = False
    report_items: list[str] = Field(default_factory=list)


@cache
def builtin_regimes() -> dict[str, Regime]:
    """The shipped table, keyed by regime id."""
    text = resources.files("orchestrator").joinpath("data/regimes.yaml").read_text("utf-8")
    return {key: Regime.model_validate(value) for key, value in yaml.safe_load(text).items()}


def load_regimes(override: Path | None = None) -> dict[str, Regime]:
    """The built-in table, updated entry by entry from ``override`` when given."""
    table = dict(builtin_regimes())
    if override is not None:
        data = yaml.safe_load(override.read_text("utf-8")) or {}
        table.update({key: Regime.model_validate(value) for key, value in data.items()})
    return table
