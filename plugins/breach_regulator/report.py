"""The regulator report as data: GDPR Art. 33(3) contents plus timing, lateness and phase.

Counts and categories come from the incident facts when present:

    affected_count       approximate number of data subjects
    records_count        approximate number of personal data records
    subject_categories   categories of data subjects (list, or text separated by , or ;)
    data_categories      categories of personal data (same forms)
    breach_started / breach_ended   when the breach began and ended (datetime; the
                         ``_at`` spellings are read too)
    report_phase         initial | follow-up | final (Art. 33(4): information in phases)
    previous_report      reference of the report a follow-up or final report supplements
    delay_reason         why the report is late (Art. 33(1)); required when it is
    law_enforcement_notified   whether the police are involved (several US regimes ask)

A fact that is absent reads "not yet known": Art. 33(4) allows the rest to follow in phases,
and a regulator must see the gap rather than a blank.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from orchestrator.plugin import BreachError, Message
from orchestrator.plugin.textblocks import BREACH_END_FACTS, BREACH_START_FACTS
from orchestrator.plugin.textblocks import clean as clean_text

NOT_YET_KNOWN = "not yet known"
FORMAT = "breach-orchestrator/regulator-report/1"
PHASES = ("initial", "follow-up", "final")


class ReportError(BreachError):
    """The report cannot be built (unknown regulator, invalid report phase...)."""


@dataclass
class Report:
    """The report and what the commander should know before it is filed."""

    data: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


def clean(value: Any) -> Any:
    """Text without characters invalid in XML/HTML; other values unchanged."""
    return clean_text(value) if isinstance(value, str) else value


def _utc(moment: datetime) -> datetime:
    # a naive time from a hand-written fact is taken as UTC, as the ledger stores times
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return _utc(moment).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _moment(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


def _first_time(facts: Mapping[str, Any], names: tuple[str, ...]) -> str | None:
    return next((iso for n in names if (iso := _iso(_moment(facts.get(n))))), None)


def _count(value: Any) -> int | str:
    """An integer count, the text given when it is not a number, or "not yet known"."""
    if value is None or isinstance(value, bool):
        return NOT_YET_KNOWN
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    text = str(value).strip()
    digits = text.replace(",", "").replace("_", "").replace(" ", "")
    if digits.isdigit():
        return int(digits)
    return clean(text) or NOT_YET_KNOWN


def _categories(value: Any) -> list[str] | str:
    if isinstance(value, str):
        value = re.split(r"[;,]", value)
    if isinstance(value, list | tuple):
        items = [clean(str(v).strip()) for v in value if str(v).strip()]
        return items or NOT_YET_KNOWN
    return NOT_YET_KNOWN


def report_phase(facts: Mapping[str, Any]) -> str:
    """``facts.report_phase`` normalised ("follow_up" -> "follow-up"); initial by default."""
    raw = facts.get("report_phase") or "initial"
    phase = re.sub(r"[\s_]+", "-", str(raw).strip().lower())
    phase = {"followup": "follow-up", "supplementary": "follow-up"}.get(phase, phase)
    if phase not in PHASES:
        raise ReportError(
            f"fact report_phase is {raw!r}; use one of {', '.join(PHASES)} (GDPR Art. 33(4))"
        )
    return phase


def filing_name(message: Message) -> str:
    """``<incident>-<regulator>-<step>``, made safe as a file name (no path separators)."""
    parts = (message.incident.incident_id, message.regulator or "regulator", message.step_id)
    safe = "-".join(re.sub(r"[^A-Za-z0-9._]+", "-", p).strip("-.") for p in parts)
    return safe.lstrip(".") or "report"


def build_report(message: Message, reported_at: datetime) -> Report:
    """The report of ``message`` to its regulator as filed at ``reported_at``."""
    incident = message.incident
    if not message.regulator:
        raise ReportError(f"step {message.step_id!r} names no regulator")
    regulator = incident.regulators.get(message.regulator)
    if regulator is None:
        raise ReportError(
            f"regulator {message.regulator!r} of step {message.step_id!r} is not declared "
            "in the playbook's regulators"
        )
    facts = incident.facts
    org = incident.organisation
    notice = message.notice
    warnings: list[str] = []

    deadline = incident.deadlines.get(message.regulator)
    reported_at = _utc(reported_at)
    aware_at = _utc(incident.aware_at)
    late = deadline is not None and reported_at > _utc(deadline)
    delay_reason = clean(str(facts["delay_reason"]).strip()) if facts.get("delay_reason") else None
    if late and not delay_reason:
        warnings.append(
            "the report is late and the fact delay_reason is not set: GDPR Art. 33(1) requires "
            "the reasons for the delay to accompany it"
        )
    phase = report_phase(facts)
    previous = facts.get("previous_report")
    if phase != "initial" and not previous:
        warnings.append(f"a {phase} report should name the report it supplements (previous_report)")

    data: dict[str, Any] = {
        "format": FORMAT,
        "report_phase": phase,
        "supplements": clean(str(previous)) if previous else None,
        "regulator": {
            "id": message.regulator,
            "name": clean(regulator.get("name")),
            "regime": clean(regulator.get("regime")),
            "jurisdiction": clean(regulator.get("jurisdiction")),
            "email": clean(regulator.get("email")),
            "url": clean(regulator.get("url")),
        },
        "incident": {
            "id": incident.incident_id,
            "title": clean(incident.title),
            "severity": incident.severity,
            "playbook": {"id": incident.playbook_id, "version": str(incident.playbook_version)},
            "step_id": message.step_id,
            "delivery_id": message.delivery_id,
        },
        "controller": {
            "name": clean(org.get("name")),
            "address": clean(org.get("address")),
            "email": clean(org.get("contact_email")),
            "phone": clean(org.get("contact_phone")),
            "website": clean(org.get("website")),
        },
        # Art. 33(3)(b): the DPO, or another contact point where more can be obtained
        "contact_point": {
            "dpo": clean(org.get("dpo")),
            "email": clean(org.get("contact_email")),
            "phone": clean(org.get("contact_phone")),
        },
        # Art. 33(3)(a)
        "nature_of_breach": {
            "description": clean(notice.what_happened) or NOT_YET_KNOWN,
            "data_involved": clean(notice.data_involved) or NOT_YET_KNOWN,
            "categories_of_data_subjects": _categories(facts.get("subject_categories")),
            "approximate_number_of_data_subjects": _count(facts.get("affected_count")),
            "categories_of_personal_data": _categories(facts.get("data_categories")),
            "approximate_number_of_records": _count(facts.get("records_count")),
            "breach_started_at": _first_time(facts, BREACH_START_FACTS) or NOT_YET_KNOWN,
            "breach_ended_at": _first_time(facts, BREACH_END_FACTS) or NOT_YET_KNOWN,
        },
        "likely_consequences": clean(notice.impact),  # Art. 33(3)(c)
        "measures_taken_or_proposed": clean(notice.measures),  # Art. 33(3)(d)
        "advice_to_data_subjects": clean(notice.advice),
        "contact_for_data_subjects": clean(notice.contact),
        "notice_language": notice.locale,
        "timeline": {
            "aware_at": _iso(aware_at),
            "deadline": _iso(deadline),
            "reported_at": _iso(reported_at),
            "hours_after_awareness": round((reported_at - aware_at).total_seconds() / 3600, 1),
            "late": late,
        },
        "reasons_for_delay": delay_reason if late else None,
    }
    if "law_enforcement_notified" in facts:
        data["law_enforcement_notified"] = facts["law_enforcement_notified"]
    return Report(data, warnings)
