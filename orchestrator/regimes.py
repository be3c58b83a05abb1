"""Statutory notification regimes and their deadlines, as overridable data.

The built-in table (``data/regimes.yaml``) summarises the statutes for planning; it is not legal
advice. Each regime names the event that starts its clock (``clock``), its unit, the time zone
in which its days end and the jurisdiction whose public holidays are not business days.
:mod:`orchestrator.clocks` turns that into a due moment.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from . import conditions
from .errors import ConfigurationError
from .limits import InputRejected, read_document
from .locations import load_yaml

DeadlineUnit = Literal["hours", "calendar_days", "business_days", "months", "none"]
#: how a report item's value is written in the report (and typed in its JSON Schema)
ItemType = Literal["text", "count", "list", "datetime", "boolean", "channels", "any"]
#: the phases of a report filed in instalments (GDPR Art. 33(4), NIS2 Art. 23(4), 8-K/A)
ReportPhase = Literal["initial", "follow-up", "final"]

#: the clock names of the table and the incident event that starts each
CLOCK_EVENTS = {
    "awareness": "aware",
    "discovery": "discovered",
    "determination": "determined",
    "assessment": "assessed",
}
#: ``filing:REGIME`` starts a clock when the filing (or notice) under REGIME was made
FILING_PREFIX = "filing:"


class Deadline(BaseModel):
    """``amount`` units after the clock starts; unit ``none`` means "without undue delay"."""

    model_config = ConfigDict(extra="forbid")
    amount: int = Field(ge=0)
    unit: DeadlineUnit

    def __str__(self) -> str:
        if self.unit == "none":
            return "without undue delay"
        unit = self.unit.replace("_", " ")
        return f"{self.amount} {unit[:-1] if self.amount == 1 else unit}"


class ReportItem(BaseModel):
    """One item a report under a regime must state: where its value comes from, and the
    heading the regulator knows it by.

    ``from`` is an expression over the report's scope (see :mod:`orchestrator.reporting`):
    ``regulator.nature`` (the playbook's regulator-voice notice), ``facts.records_count``,
    ``counts.total``, ``notified`` ... An item whose source gives nothing is missing and named,
    never filed blank; ``optional`` items are stated when given and never missing; ``when`` is a
    condition over the same scope deciding whether the item is asked for at all.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    source: str = Field(default="", alias="from", description="Where the value comes from.")
    label: str = Field(default="", description="The heading the regulator knows it by.")
    type: ItemType = "text"
    when: str | None = Field(default=None, description="Asked for only when this holds.")
    optional: bool = False

    @field_validator("source", "when")
    @classmethod
    def _parses(cls, value: str | None) -> str | None:
        if value:
            try:
                conditions.parse(value)
            except conditions.ConditionError as exc:
                raise ValueError(str(exc)) from None
        return value


class Regime(BaseModel):
    """One statute's notification duty: who is told, by when, from which event, and when it
    applies."""

    model_config = ConfigDict(extra="forbid")
    name: str
    notifies: str
    deadline: Deadline
    clock: str = Field(
        default="awareness",
        description="awareness, discovery, determination, assessment, or filing:REGIME.",
    )
    statute: str = ""
    jurisdiction: str = ""
    timezone: str = Field(default="UTC", description="IANA zone in which its days end.")
    holidays: str | None = Field(
        default=None,
        description="Country (or COUNTRY-SUBDIVISION) whose public holidays are not business "
        "days, as the `holidays` package names it: US, BR, US-NY.",
    )
    applies_when: str | None = Field(
        default=None, description="Condition over facts and counts; absent: always applies."
    )
    each_region: str | None = Field(
        default=None,
        description="Evaluate `applies_when` once per audience region starting with this prefix "
        "(`counts.region` is that region's count); applies when any region passes.",
    )
    individuals: bool = Field(
        default=False, description="Its duty is a notice to the people affected."
    )
    notes: str = ""
    phased: bool = Field(
        default=False, description="Its report may be given in phases (initial, follow-up, final)."
    )
    report_title: str = Field(default="", description="The report's title (default: its name).")
    report_layout: Literal["form", "notice"] = Field(
        default="form",
        description="form: items as a regulator's form lists them; notice: a sample notice, "
        "each item a headed section (California's statutory headings).",
    )
    report_phase: ReportPhase | None = Field(
        default=None,
        description="The phase a report under this regime is (NIS2's notification is the "
        "follow-up of its early warning); a step's `phase` or the fact report_phase otherwise.",
    )
    follows: str | None = Field(
        default=None,
        description="The regime whose filing a report under this one supplements "
        "(nis2-notification follows nis2-early-warning).",
    )
    report_items: dict[str, ReportItem] = Field(
        default_factory=dict,
        description="What a report under this regime must state, in the regulator's order: "
        "item -> where it comes from (an expression, or {from, label, type, when, optional}). "
        "A list names items kept by hand, without a source.",
    )

    @field_validator("report_items", mode="before")
    @classmethod
    def _items(cls, value: object) -> object:
        # A list names items kept by hand (no source); a text is the item's source.
        if isinstance(value, list):
            return {str(item): {} for item in value}
        if isinstance(value, dict):
            return {k: {"from": v} if isinstance(v, str) else v for k, v in value.items()}
        return value

    @property
    def title(self) -> str:
        """The report's title."""
        return self.report_title or self.name

    @field_validator("clock")
    @classmethod
    def _known_clock(cls, value: str) -> str:
        if value in CLOCK_EVENTS or (value.startswith(FILING_PREFIX) and value[7:]):
            return value
        known = ", ".join([*CLOCK_EVENTS, "filing:REGIME"])
        raise ValueError(f"unknown clock {value!r}; use one of {known}")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (an IANA name such as Europe/Paris)"
            ) from None
        return value

    @field_validator("holidays")
    @classmethod
    def _known_calendar(cls, value: str | None) -> str | None:
        if value is not None:
            holiday_calendar(value)
        return value

    @field_validator("applies_when")
    @classmethod
    def _parses(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                conditions.parse(value)
            except conditions.ConditionError as exc:
                raise ValueError(f"applies_when: {exc}") from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        """The time zone in which this regime's days end."""
        return ZoneInfo(self.timezone)

    @property
    def start_event(self) -> str:
        """The incident event that starts this clock (``determined``, ``filed:REGIME``)."""
        if self.clock.startswith(FILING_PREFIX):
            return "filed:" + self.clock.removeprefix(FILING_PREFIX)
        return CLOCK_EVENTS[self.clock]


@cache
def holiday_calendar(spec: str) -> holidays.HolidayBase:
    """The public holidays of ``spec`` (``US``, ``BR``, ``US-NY``), every year on demand."""
    country, _, subdiv = spec.partition("-")
    try:
        return holidays.country_holidays(country, subdiv=subdiv or None)
    except NotImplementedError:
        raise ValueError(
            f"no public-holiday calendar for {spec!r} (a country code the `holidays` package "
            "knows, optionally -SUBDIVISION)"
        ) from None


@cache
def builtin_regimes() -> dict[str, Regime]:
    """The shipped table, keyed by regime id."""
    text = resources.files("orchestrator").joinpath("data/regimes.yaml").read_text("utf-8")
    return {key: Regime.model_validate(value) for key, value in yaml.safe_load(text).items()}


def load_regimes(override: Path | None = None) -> dict[str, Regime]:
    """The built-in table, updated entry by entry from ``override`` when given."""
    table = dict(builtin_regimes())
    if override is not None:
        try:
            text = read_document(override, "regimes file")
        except InputRejected as exc:
            raise ConfigurationError(str(exc)) from None
        # read like a playbook: alias expansion and nesting are bounded
        data, _, problems = load_yaml(text, str(override))
        if problems:
            raise ConfigurationError(str(problems[0]))
        data = data or {}
        if not isinstance(data, dict):
            raise ConfigurationError(f"{override}: expected regime ids mapped to regimes")
        for key, value in data.items():
            try:
                table[key] = Regime.model_validate(value)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                raise ConfigurationError(
                    f"{override}: regime {key!r}: {where}: {first['msg']}"
                ) from None
    return table
