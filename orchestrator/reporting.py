"""Reports to regulators: what each must state, built from an incident, checked, and validated
against the report's JSON Schema.

Each regime lists its report items (``report_items`` in the regimes table) with where each
comes from: an expression over the report's *scope*:

    regulator      the playbook's notice as regulators read it (third person, default locale):
                   nature, consequences, measures_taken, measures_proposed, breach_type, ...
    notice         the notice sent to people (what_happened, data_involved, advice, contact ...)
    facts          the incident's facts
    counts         the audience counts recorded when it was counted (total, regions['US-TX'])
    notified       people reached so far, from the ledger: {total, by_channel}
    organisation   the playbook's organisation (name, dpo, contact_email, contact_phone ...)
    incident       id, title, aware_at
    authority      the playbook's regulator entry (name, lead_authority, jurisdiction ...)
    severity       the playbook's severity

An item whose source gives nothing (no value, empty text, empty list) is *missing*: it is named
at playbook validation, by ``breach report --check`` and in the report's ``missing`` list, and it
is written "not yet known" rather than blank. A report is one JSON document (a regime's *kind*:
its items and their types, ``report-schemas/<regime>.schema.json`` in the package) rendered to
HTML by the regulator plugin. Phases (initial, follow-up, final) are versions: a later one names
the earlier filing by its ledger delivery id, content hash and filing reference.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

import jsonschema

from . import conditions
from .applicability import COUNTED_KIND, RegionCounts
from .errors import BreachError
from .facts import BREACH_END_FACTS, BREACH_START_FACTS
from .message import Message
from .regimes import ItemType, Regime, ReportItem, builtin_regimes

if TYPE_CHECKING:
    from .ledger import Ledger

NOT_YET_KNOWN = "not yet known"
FORMAT = "breach-orchestrator/regulator-report/2"
PHASES = ("initial", "follow-up", "final")
SCHEMA_BASE = "https://breach-orchestrator.dev/schema/report/"
#: the package folder holding one JSON Schema per built-in regime with report items
SCHEMA_FOLDER = "data/report-schemas"
#: the item a later phase needs: the filing it supplements
PREVIOUS_FILING = "previous_filing"


class ReportError(BreachError):
    """The report cannot be built (unknown regulator, invalid report phase...)."""


# -- item values ------------------------------------------------------------------------------


_INVALID = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def clean(value: Any) -> Any:
    """Text without characters invalid in XML/HTML (NUL, C0 controls, lone surrogates); other
    values unchanged."""
    return _INVALID.sub("", value) if isinstance(value, str) else value


def _utc(moment: datetime) -> datetime:
    # a naive time from a hand-written fact is taken as UTC, as the ledger stores times
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def iso(moment: datetime | None) -> str | None:
    """``2026-11-30T09:00:00Z`` (UTC, whole seconds), or None."""
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


def first_time(facts: Mapping[str, Any], names: tuple[str, ...]) -> str | None:
    """The first of the facts ``names`` that holds a time, as ISO 8601 UTC."""
    return next((stamp for n in names if (stamp := iso(_moment(facts.get(n))))), None)


def count(value: Any) -> int | str | None:
    """An integer count, the text given when it is not a number ("about 250,000"), or None."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    text = str(value).strip()
    digits = text.replace(",", "").replace("_", "").replace(" ", "")
    if digits.isdigit():
        return int(digits)
    return clean(text) or None


def categories(value: Any) -> list[str] | None:
    """A list of categories from a list or a text separated by , or ; (None when empty)."""
    if isinstance(value, str):
        value = re.split(r"[;,]", value)
    if isinstance(value, list | tuple):
        items = [clean(str(v).strip()) for v in value if str(v).strip()]
        return items or None
    return None


def _text(value: Any) -> str | None:
    if isinstance(value, datetime):
        return iso(value)
    text = clean(str(value)).strip() if value is not None else ""
    return text or None


def typed(value: Any, kind: ItemType) -> Any:
    """``value`` written as an item of ``kind`` in the report; None when it says nothing."""
    if value is None:
        return None
    if kind == "count":
        return count(value)
    if kind == "list":
        return categories(value)
    if kind == "boolean":
        return value if isinstance(value, bool) else _text(value)
    if kind == "datetime":
        moment = _moment(value)
        return iso(moment) if moment is not None else _text(value)
    if kind == "channels":
        return dict(value) if isinstance(value, Mapping) else None
    if kind == "any" and isinstance(value, list | tuple):
        return categories(value)
    if isinstance(value, bool | int | float) and kind == "any":
        return value
    return _text(value)


@dataclass(frozen=True)
class ItemCheck:
    """One report item: where it comes from, and what the incident gives for it."""

    item: str
    label: str
    source: str
    value: Any
    missing: bool
    optional: bool = False

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (times as ISO 8601)."""
        value = self.value.isoformat() if isinstance(self.value, datetime) else self.value
        return {"item": self.item, "label": self.label, "source": self.source, "value": value,
                "missing": self.missing}  # fmt: skip


def label(item: str, spec: ReportItem) -> str:
    """The item's heading: its ``label``, else its id in words."""
    return spec.label or item.replace("_", " ").capitalize()


def check_items(regime: Regime, scope: Mapping[str, Any]) -> list[ItemCheck]:
    """Every report item of ``regime`` asked for in ``scope`` (its ``when`` holds), read from
    ``scope``; items without a source are kept by hand and never count as missing."""
    out = []
    for item, spec in regime.report_items.items():
        if spec.when and not conditions.parse(spec.when)(scope):
            continue
        if not spec.source:
            out.append(ItemCheck(item, label(item, spec), "", None, False, True))
            continue
        value = typed(conditions.parse(spec.source).evaluate(scope), spec.type)
        empty = value is None or (isinstance(value, str | list | dict) and not value)
        out.append(ItemCheck(item, label(item, spec), spec.source, value,
                             empty and not spec.optional, spec.optional))  # fmt: skip
    return out


# -- what the ledger holds about an incident --------------------------------------------------


class LedgerRecords(Mapping[str, Any]):
    """What the ledger holds about one incident, read when a report asks for it (so a report
    filed hours after the campaign started counts the people reached by then).

    Keys: ``notified`` (``{"total", "by_channel"}``: distinct people with a sent or delivered
    message), ``counts`` (the audience counts recorded, or ``{}``) and ``filings`` (regulator
    filings made so far, oldest first).
    """

    KEYS = ("notified", "counts", "filings")

    def __init__(self, ledger: Ledger, incident_id: str) -> None:
        self.ledger = ledger
        self.incident_id = incident_id

    def __getitem__(self, key: str) -> Any:
        if key == "notified":
            return notified(self.ledger, self.incident_id)
        if key == "counts":
            return recorded_counts(self.ledger, self.incident_id)
        if key == "filings":
            return filings(self.ledger, self.incident_id)
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.KEYS)

    def __len__(self) -> int:
        return len(self.KEYS)


def notified(ledger: Ledger, incident_id: str) -> dict[str, Any]:
    """People reached so far: ``{"total": n, "by_channel": {channel: n}}``."""
    return {"total": ledger.reached(incident_id),
            "by_channel": ledger.reached_by_channel(incident_id)}  # fmt: skip


def recorded_counts(ledger: Ledger, incident_id: str) -> dict[str, Any]:
    """The latest audience counts the incident's timeline recorded (regions read 0 when
    absent), or ``{}`` before the audience was counted."""
    found: dict[str, Any] = {}
    for event in ledger.events(incident_id):
        if event.kind == COUNTED_KIND:
            found = {"total": event.detail["total"],
                     "regions": RegionCounts(event.detail["regions"])}  # fmt: skip
    return found


def filings(ledger: Ledger, incident_id: str) -> list[dict[str, Any]]:
    """The regulator filings made for the incident so far, oldest first: delivery id, step,
    regulator, content hash, the notifier's filing reference and when it was made."""
    return [
        {"delivery_id": d.key, "step_id": d.step_id,
         "regulator": d.recipient_id.removeprefix("regulator:"),
         "content_hash": d.content_hash, "filing_reference": d.provider_message_id,
         "filed_at": iso(d.sent_at or d.updated_at)}
        for d in ledger.filings(incident_id)
    ]  # fmt: skip


# -- the report ---------------------------------------------------------------------------------


@dataclass
class Report:
    """The report and what the commander should know before it is filed."""

    data: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    checks: list[ItemCheck] = field(default_factory=list)
    #: where the report breaks its regime's JSON Schema (a missing item is one of them)
    schema_errors: list[str] = field(default_factory=list)


def normalise_phase(raw: Any) -> str:
    """``raw`` as a report phase ("follow_up" -> "follow-up"); initial when empty."""
    phase = re.sub(r"[\s_]+", "-", str(raw or "initial").strip().lower())
    phase = {"followup": "follow-up", "supplementary": "follow-up"}.get(phase, phase)
    if phase not in PHASES:
        raise ReportError(
            f"fact report_phase is {raw!r}; use one of {', '.join(PHASES)} (GDPR Art. 33(4))"
        )
    return phase


def report_phase(facts: Mapping[str, Any]) -> str:
    """``facts.report_phase`` normalised ("follow_up" -> "follow-up"); initial by default."""
    return normalise_phase(facts.get("report_phase"))


def regime_of(regulator: Mapping[str, Any], regimes: Mapping[str, Regime] | None = None) -> Regime:
    """The regime a regulator entry reports under: the one the campaign handed over with it
    (``regime_spec``, so a team's regimes file counts), else the built-in table's."""
    spec = regulator.get("regime_spec")
    if spec:
        return Regime.model_validate(spec)
    table = regimes if regimes is not None else builtin_regimes()
    regime = table.get(str(regulator.get("regime")))
    if regime is None:
        raise ReportError(f"regulator {regulator.get('id')!r} names unknown regime "
                          f"{regulator.get('regime')!r}; see `breach regimes`")  # fmt: skip
    return regime


def phase_of(message: Message, regulator: Mapping[str, Any], regime: Regime) -> str:
    """The step's phase, else the regime's, else the fact ``report_phase``, else initial."""
    step_phase = (regulator.get("phases") or {}).get(message.step_id)
    if step_phase:
        return normalise_phase(step_phase)
    if regime.report_phase:
        return regime.report_phase
    return report_phase(message.incident.facts)


def previous_filing(
    message: Message, regulator: Mapping[str, Any], regime: Regime
) -> dict[str, Any] | None:
    """The latest earlier filing this report supplements: to the same regulator, or under the
    regime it ``follows`` (NIS2's notification follows its early warning)."""
    regulators = message.incident.regulators
    mine = regulator.get("id") or message.regulator
    earlier = [
        f for f in message.incident.records.get("filings") or []
        if f["step_id"] != message.step_id and (
            f["regulator"] == mine or (regime.follows is not None and
                                       (regulators.get(f["regulator"]) or {}).get("regime")
                                       == regime.follows))
    ]  # fmt: skip
    return dict(earlier[-1]) if earlier else None


def report_scope(message: Message, regulator: Mapping[str, Any]) -> dict[str, Any]:
    """What report item sources read (see the module's documentation)."""
    incident, notice = message.incident, message.notice
    records = incident.records
    counts = dict(records.get("counts") or {}) if records else {}
    if "regions" in counts:
        counts["regions"] = RegionCounts(counts["regions"])
    texts = ("what_happened", "data_involved", "impact", "measures", "advice", "remedies",
             "contact", "subject")  # fmt: skip
    return {
        "facts": dict(incident.facts), "counts": counts, "severity": incident.severity,
        "notice": {k: getattr(notice, k) for k in texts},
        "regulator": dict(notice.regulator or {}),
        "organisation": dict(incident.organisation),
        "incident": {"id": incident.incident_id, "title": incident.title,
                     "aware_at": incident.aware_at},
        "notified": records.get("notified") if records else None,
        "authority": dict(regulator),
    }  # fmt: skip


def build_report(message: Message, reported_at: datetime) -> Report:
    """The report of ``message`` to its regulator, as filed at ``reported_at``."""
    incident = message.incident
    if not message.regulator:
        raise ReportError(f"step {message.step_id!r} names no regulator")
    regulator = incident.regulators.get(message.regulator)
    if regulator is None:
        raise ReportError(
            f"regulator {message.regulator!r} of step {message.step_id!r} is not declared "
            "in the playbook's regulators"
        )
    regime_id = str(regulator.get("regime"))
    regime = regime_of(regulator)
    facts, org, notice = incident.facts, incident.organisation, message.notice
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
    phase = phase_of(message, regulator, regime)
    previous = previous_filing(message, regulator, regime)
    if previous is None and facts.get("previous_report"):
        # a filing made outside the orchestrator, named by hand
        previous = {"filing_reference": clean(str(facts["previous_report"]))}

    checks = check_items(regime, report_scope(message, regulator))
    items: dict[str, dict[str, Any]] = {}
    missing: list[str] = []
    for check in checks:
        if check.missing:
            missing.append(check.item)
        elif check.value is None:
            continue  # an optional item not given, or one kept by hand: left out, never blank
        value = NOT_YET_KNOWN if check.missing else check.value
        items[check.item] = {"label": check.label, "value": value}
    if phase != "initial" and previous is None:
        missing.append(PREVIOUS_FILING)
    if missing:
        warnings.append(f"the report does not state: {', '.join(missing)} (written "
                        f"{NOT_YET_KNOWN!r}); see `breach report --check`")  # fmt: skip

    data: dict[str, Any] = {
        "format": FORMAT,
        "kind": regime_id,
        "schema": schema_id(regime_id),
        "title": clean(regime.title),
        "layout": regime.report_layout,
        "report_phase": phase,
        "supplements": previous,
        "regulator": {
            "id": message.regulator,
            "name": clean(regulator.get("name")),
            "regime": regime_id,
            "regime_name": clean(regime.name),
            "statute": clean(regime.statute) or None,
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
        "contact_point": {
            "dpo": clean(org.get("dpo")),
            "email": clean(org.get("contact_email")),
            "phone": clean(org.get("contact_phone")),
        },
        "breach_period": {
            "started_at": first_time(facts, BREACH_START_FACTS) or NOT_YET_KNOWN,
            "ended_at": first_time(facts, BREACH_END_FACTS) or NOT_YET_KNOWN,
        },
        "items": items,
        "missing": missing,
        "notice_language": notice.locale,
        "timeline": {
            "aware_at": iso(aware_at),
            "deadline": iso(deadline),
            "reported_at": iso(reported_at),
            "hours_after_awareness": round((reported_at - aware_at).total_seconds() / 3600, 1),
            "late": late,
        },
        "reasons_for_delay": delay_reason if late else None,
    }
    if "law_enforcement_notified" in facts:
        data["law_enforcement_notified"] = facts["law_enforcement_notified"]
    errors = schema_errors(data, schema_for(regime_id, regime))
    # a missing item is already named; other schema errors are the commander's to see
    warnings += [f"schema: {e}" for e in errors if not e.startswith(("missing", "items."))]
    return Report(data, warnings, missing, checks, errors)


# -- JSON Schemas -----------------------------------------------------------------------------

_TEXT: dict[str, Any] = {"type": "string", "minLength": 1}
_LIST: dict[str, Any] = {"type": "array", "minItems": 1, "items": _TEXT}
_VALUES: dict[str, dict[str, Any]] = {
    "text": _TEXT,
    "count": {"anyOf": [{"type": "integer", "minimum": 0}, _TEXT]},
    "list": _LIST,
    "datetime": _TEXT,
    "boolean": {"type": "boolean"},
    "channels": {
        "type": "object", "required": ["total", "by_channel"],
        "properties": {"total": {"type": "integer", "minimum": 0},
                       "by_channel": {"type": "object",
                                      "additionalProperties": {"type": "integer", "minimum": 0}}},
    },
    "any": {"anyOf": [_TEXT, _LIST, {"type": "boolean"}, {"type": "number"}]},
}  # fmt: skip
_NULLABLE_TEXT: dict[str, Any] = {"type": ["string", "null"]}


def schema_id(regime_id: str) -> str:
    """The ``$id`` of the JSON Schema of reports under ``regime_id``."""
    return f"{SCHEMA_BASE}{regime_id}.schema.json"


def report_schema(regime_id: str, regime: Regime) -> dict[str, Any]:
    """The JSON Schema a complete report under ``regime`` satisfies: its items with their
    labels and types, every required one present and stated, nothing missing, and a later
    phase naming the filing it supplements."""
    items: dict[str, Any] = {}
    required = []
    for item, spec in regime.report_items.items():
        items[item] = {
            "type": "object", "required": ["label", "value"], "additionalProperties": False,
            "properties": {"label": {"const": label(item, spec)},
                           "value": _VALUES[spec.type]},
        }  # fmt: skip
        if spec.source and not spec.optional and not spec.when:
            required.append(item)
    filing = {
        "type": "object", "minProperties": 1,
        "properties": {"delivery_id": _TEXT, "step_id": _TEXT, "regulator": _TEXT,
                       "content_hash": {"type": ["string", "null"], "pattern": "^[0-9a-f]{64}$"},
                       "filing_reference": _NULLABLE_TEXT, "filed_at": _NULLABLE_TEXT},
    }  # fmt: skip
    party = {"type": "object", "additionalProperties": _NULLABLE_TEXT}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": schema_id(regime_id),
        "title": f"{regime.title}: report under {regime_id}",
        "description": f"{regime.name} ({regime.statute or 'see the regimes table'}). A "
        "complete report: every required item stated, none missing.",
        "type": "object",
        "required": ["format", "kind", "title", "report_phase", "supplements", "regulator",
                     "incident", "controller", "contact_point", "items", "missing", "timeline"],
        "properties": {
            "format": {"const": FORMAT},
            "kind": {"const": regime_id},
            "schema": {"const": schema_id(regime_id)},
            "title": {"const": regime.title},
            "layout": {"const": regime.report_layout},
            "report_phase": {"enum": list(PHASES)},
            "supplements": {"anyOf": [{"type": "null"}, filing]},
            "regulator": {"type": "object", "required": ["id", "name", "regime"],
                          "properties": {"id": _TEXT, "name": _TEXT,
                                         "regime": {"const": regime_id}}},
            "incident": {"type": "object", "required": ["id", "delivery_id"],
                         "properties": {"id": _TEXT, "delivery_id": _TEXT}},
            "controller": {**party, "required": ["name", "email"],
                           "properties": {"name": _TEXT, "email": _TEXT}},
            "contact_point": party,
            "items": {"type": "object", "properties": items, "required": required,
                      "additionalProperties": False},
            "missing": {"type": "array", "maxItems": 0},
            "timeline": {"type": "object", "required": ["aware_at", "reported_at", "late"],
                         "properties": {"aware_at": _TEXT, "reported_at": _TEXT,
                                        "late": {"type": "boolean"}}},
        },
        # a follow-up or final report names the filing it supplements
        "if": {"properties": {"report_phase": {"enum": ["follow-up", "final"]}}},
        "then": {"properties": {"supplements": filing}},
    }  # fmt: skip


@cache
def shipped_schema(regime_id: str) -> dict[str, Any] | None:
    """The JSON Schema shipped in the package for a built-in regime, or None."""
    path = resources.files("orchestrator").joinpath(f"{SCHEMA_FOLDER}/{regime_id}.schema.json")
    if not path.is_file():
        return None
    loaded: dict[str, Any] = json.loads(path.read_text("utf-8"))
    return loaded


def schema_for(regime_id: str, regime: Regime) -> dict[str, Any]:
    """The shipped schema when ``regime`` is the built-in one, else one made from it (a team's
    regimes file may change a regime's items)."""
    builtin = builtin_regimes().get(regime_id)
    if builtin == regime and (shipped := shipped_schema(regime_id)) is not None:
        return shipped
    return report_schema(regime_id, regime)


def schema_errors(data: Mapping[str, Any], schema: Mapping[str, Any]) -> list[str]:
    """Where ``data`` breaks ``schema``, one located message each (``items.nature.value:
    '' is too short``), in document order."""
    validator = jsonschema.Draft202012Validator(schema)
    found = sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path])
    return [f"{'.'.join(str(p) for p in e.absolute_path) or 'report'}: {e.message}"
            for e in found]  # fmt: skip


def validate_report(data: Mapping[str, Any]) -> list[str]:
    """The schema errors of a built report (its regime from ``data["kind"]``)."""
    regime_id = str(data.get("kind"))
    regime = builtin_regimes().get(regime_id)
    schema = shipped_schema(regime_id) if regime is not None else None
    if schema is None:
        return [f"kind: no shipped schema for reports under {regime_id!r}"]
    return schema_errors(data, schema)


def write_schemas(regimes: Mapping[str, Regime], folder: Any) -> list[str]:
    """Write one schema per regime with report items into ``folder`` (a ``Path``); returns the
    file names. Used to refresh the shipped schemas after the regimes table changes."""
    names = []
    for regime_id, regime in regimes.items():
        if regime.report_items:
            name = f"{regime_id}.schema.json"
            text = json.dumps(report_schema(regime_id, regime), indent=2, ensure_ascii=False)
            (folder / name).write_text(text + "\n", encoding="utf-8")
            names.append(name)
    return names


def regulator_entries(
    playbook_regulators: Sequence[Any], steps: Sequence[Any], regimes: Mapping[str, Regime]
) -> dict[str, dict[str, Any]]:
    """The playbook's regulators as messages carry them: the entry, its regime's name and
    definition (``regime_spec``) and the phase of each step filing to it."""
    out = {}
    for r in playbook_regulators:
        regime = regimes.get(r.regime)
        out[r.id] = {
            **r.model_dump(mode="json"),
            "regime_name": regime.name if regime is not None else r.regime,
            "regime_spec": regime.model_dump(mode="json", by_alias=True) if regime else None,
            "phases": {s.id: s.phase for s in steps if s.regulator == r.id and s.phase},
        }
    return out
