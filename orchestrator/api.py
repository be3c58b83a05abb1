"""The Python API under the CLI and the server: validate, trigger, status.

Each function takes plain values, returns plain data (dataclasses / dicts), and raises
:class:`~orchestrator.errors.BreachError` subclasses with messages a commander can act on.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import facts as facts_mod
from .audience import open_audience
from .campaign import Campaign, StepOutcome
from .durations import format_duration
from .errors import BreachError, Problem
from .events import IncidentEvent
from .ledger import Incident, Ledger, Step, StepState, now
from .message import IncidentContext
from .outbox import Outbox
from .playbook import Playbook
from .pluginhost import PluginHost
from .regimes import Regime, load_regimes
from .schedule import deadlines, ordered_steps
from .validation import load_playbook, validate_file


def validate(
    paths: Sequence[Path], *, host: PluginHost | None = None, regimes_file: Path | None = None
) -> list[Problem]:
    """Every problem of every playbook file (an empty list: all valid)."""
    host = host or PluginHost()
    regimes = load_regimes(regimes_file)
    problems: list[Problem] = []
    for path in paths:
        problems += validate_file(path, host=host, regimes=regimes)[1]
    return problems


@dataclass
class TriggerResult:
    """What ``trigger`` did: the incident id and the dry-run summary (also in summary.json)."""

    incident_id: str
    summary: dict[str, Any]
    outcomes: list[StepOutcome] = field(default_factory=list)


def new_incident_id(aware_at: datetime) -> str:
    return f"INC-{aware_at:%Y%m%d}-{secrets.token_hex(3)}"


def trigger(
    playbook_path: Path,
    *,
    audience: str,
    audience_options: Mapping[str, Any] | None = None,
    facts: Mapping[str, Any] | None = None,
    aware_at: datetime | None = None,
    dry_run: bool = True,
    outbox: Path | None = None,
    db: str | None = None,
    host: PluginHost | None = None,
    regimes_file: Path | None = None,
    source: str = "cli",
    dedupe_key: str | None = None,
) -> TriggerResult:
    """Create an incident from a playbook and carry it out.

    With ``dry_run`` every step is evaluated at once (time compressed), every message rendered
    into ``outbox``, and nothing leaves the machine.
    """
    host = host or PluginHost()
    regimes = load_regimes(regimes_file)
    playbook = load_playbook(playbook_path, host=host, regimes=regimes)
    if not dry_run:
        raise BreachError(
            "live delivery is carried out by the delivery engine (`breach run`), which this "
            "version does not ship yet; use --dry-run"
        )
    given = dict(facts or {})
    resolved = facts_mod.resolve(playbook.facts, given)
    aware = (aware_at or now()).astimezone(UTC)
    ledger = Ledger(db)
    options = dict(audience_options or {})
    people = open_audience(audience, options, host.source_factory)
    incident_id = new_incident_id(aware)
    due = deadlines(playbook, aware, regimes)
    text = playbook_path.read_text("utf-8")
    outbox = outbox or Path("outbox") / incident_id
    mode = "dry-run"
    row = Incident(
        id=incident_id, playbook_id=playbook.id, playbook_version=str(playbook.version),
        playbook_text=text, playbook_digest=hashlib.sha256(text.encode()).hexdigest(),
        title=playbook.title, severity=playbook.severity, mode=mode, state="running",
        aware_at=aware, created_at=now(), facts=_jsonable(resolved), audience_spec=audience,
        audience_options=_jsonable(options), outbox=str(outbox), source=source,
        dedupe_key=dedupe_key,
    )  # fmt: skip
    timed = ordered_steps(playbook, aware, due)
    steps = [
        Step(incident_id=incident_id, step_id=step.id, position=i, channel=step.channel,
             due_at=at, state=StepState.SCHEDULED.value, detail={})
        for i, (step, at) in enumerate(timed)
    ]  # fmt: skip
    ledger.add_incident(row, steps)
    context = _context(playbook, incident_id, aware, resolved, mode, regimes, due)
    incident_vars = {"id": incident_id, "aware_at": aware, "notice_date": now(),
                     "title": playbook.title}  # fmt: skip
    box = Outbox(outbox)
    campaign = Campaign(host=host, ledger=ledger, playbook=playbook, incident=context,
                        incident_vars=incident_vars, audience=people, outbox=box)  # fmt: skip
    campaign.emit("incident.triggered", playbook=playbook.id, version=str(playbook.version),
                  mode=mode, source=source, facts=sorted(resolved))  # fmt: skip
    outcomes = [campaign.run_step(step, at) for step, at in timed]
    total = campaign.audience_total if campaign.audience_total is not None else 0
    ledger.update_incident(incident_id, state="finished", audience_total=total)
    campaign.emit("incident.finished", mode=mode)
    summary = build_summary(playbook, context, outcomes, total, host, regimes, audience, box)
    box.close(summary)
    return TriggerResult(incident_id, summary, outcomes)


def _context(
    playbook: Playbook,
    incident_id: str,
    aware: datetime,
    resolved: Mapping[str, Any],
    mode: str,
    regimes: dict[str, Regime],
    due: Mapping[str, datetime | None],
) -> IncidentContext:
    regulators = {
        r.id: {**r.model_dump(mode="json"),
               "regime_name": regimes[r.regime].name if r.regime in regimes else r.regime}
        for r in playbook.regulators
    }  # fmt: skip
    return IncidentContext(
        incident_id=incident_id, playbook_id=playbook.id,
        playbook_version=str(playbook.version), title=playbook.title,
        severity=playbook.severity, aware_at=aware, facts=dict(resolved),
        organisation=playbook.organisation.model_dump(), mode=mode,  # type: ignore[arg-type]
        regulators=regulators, deadlines=dict(due),
    )  # fmt: skip


def build_summary(
    playbook: Playbook,
    context: IncidentContext,
    outcomes: Sequence[StepOutcome],
    total: int,
    host: PluginHost,
    regimes: dict[str, Regime],
    audience: str,
    outbox: Outbox,
) -> dict[str, Any]:
    """The dry-run report: what each step did, per-channel volumes and ETAs, deadlines."""
    channels: dict[str, dict[str, Any]] = {}
    steps = []
    for outcome in outcomes:
        step = outcome.step
        entry: dict[str, Any] = {
            "step": step.id, "channel": step.channel, "due_at": outcome.due_at.isoformat(),
            "offset": format_duration(outcome.due_at - context.aware_at), "fired": outcome.fired,
            "condition": step.condition, "condition_result": outcome.condition_result,
            "approval": step.approval.role if step.approval else None, "note": outcome.note,
        }  # fmt: skip
        if "counts" in outcome.extra:
            entry["counts_seen"] = outcome.extra["counts"]
        if outcome.tally is not None:
            entry.update(outcome.tally.as_dict())
            for channel, n in outcome.tally.channels.items():
                rate = host.notifier(channel).default_rate
                slot = channels.setdefault(channel, {"messages": 0, "rate_per_second": rate})
                slot["messages"] += n
        steps.append(entry)
    for slot in channels.values():
        slot["eta_seconds"] = round(slot["messages"] / slot["rate_per_second"], 1)
    deadline_rows = []
    for regulator in playbook.regulators:
        due = context.deadlines.get(regulator.id)
        regime = regimes.get(regulator.regime)
        deadline_rows.append({
            "regulator": regulator.id, "name": regulator.name, "regime": regulator.regime,
            "regime_name": regime.name if regime else regulator.regime,
            "due_at": due.isoformat() if due else None,
            "rule": str(regulator.deadline or (regime.deadline if regime else "")),
            "hours_after_awareness": round((due - context.aware_at).total_seconds() / 3600, 1)
            if due else None,
        })  # fmt: skip
    return {
        "incident": context.incident_id,
        "mode": context.mode,
        "playbook": {"id": playbook.id, "version": str(playbook.version), "title": playbook.title},
        "aware_at": context.aware_at.isoformat(),
        "audience": {"source": audience, "people": total},
        "steps": steps,
        "channels": channels,
        "deadlines": deadline_rows,
        "previews": sorted(outbox.previews.values()),
        "outbox": str(outbox.folder),
    }


def status(incident_id: str | None = None, *, db: str | None = None) -> dict[str, Any]:
    """One incident's steps, delivery counts by state and deadlines; or the recent incidents."""
    ledger = Ledger(db)
    if incident_id is None:
        return {"incidents": [
            {"id": i.id, "playbook": i.playbook_id, "mode": i.mode, "state": i.state,
             "aware_at": i.aware_at.isoformat(), "people": i.audience_total, "title": i.title}
            for i in ledger.incidents()
        ]}  # fmt: skip
    incident = ledger.incident(incident_id)
    counts = ledger.delivery_counts(incident_id)
    reasons = ledger.reasons(incident_id)
    current = now()
    steps = [
        {"step": s.step_id, "channel": s.channel, "state": s.state,
         "due_at": s.due_at.isoformat() if s.due_at else None,
         "deliveries": counts.get(s.step_id, {}), "reasons": reasons.get(s.step_id, {}),
         "approved_by": s.approved_by}
        for s in ledger.steps(incident_id)
    ]  # fmt: skip
    return {
        "id": incident.id, "playbook": incident.playbook_id,
        "version": incident.playbook_version, "title": incident.title, "mode": incident.mode,
        "state": incident.state, "aware_at": incident.aware_at.isoformat(),
        "elapsed_hours": round((current - incident.aware_at).total_seconds() / 3600, 2),
        "people": incident.audience_total, "facts": incident.facts, "steps": steps,
        "outbox": incident.outbox,
    }  # fmt: skip


def find_open_incident(dedupe_key: str, *, db: str | None = None) -> str | None:
    """The id of the newest incident opened for ``dedupe_key`` that is not closed, or None."""
    return Ledger(db).open_incident(dedupe_key)


def add_to_timeline(
    incident_id: str,
    kind: str,
    *,
    detail: Mapping[str, Any] | None = None,
    facts: Mapping[str, Any] | None = None,
    actor: str = "orchestrator",
    db: str | None = None,
    host: PluginHost | None = None,
) -> None:
    """Record an event on an incident's timeline; ``facts`` are merged in (new facts version).

    Facts added later never re-render what was already sent: each delivery keeps the facts
    version it was rendered with.
    """
    ledger = Ledger(db)
    incident = ledger.incident(incident_id)
    event_detail = dict(detail or {})
    if facts:
        merged = {**incident.facts, **_jsonable(facts)}
        ledger.update_incident(
            incident_id, facts=merged, facts_version=incident.facts_version + 1
        )
        event_detail["facts"] = sorted(facts)
    event = IncidentEvent(incident_id, kind, None, event_detail, actor=actor)
    ledger.record(event)
    if host is not None:
        host.emit(event)


def timeline(incident_id: str, *, db: str | None = None) -> list[dict[str, Any]]:
    """Every audit event of an incident, oldest first."""
    ledger = Ledger(db)
    ledger.incident(incident_id)  # NotFound for an unknown id
    return [
        {"at": e.at.isoformat(), "kind": e.kind, "step": e.step_id, "actor": e.actor,
         "detail": e.detail}
        for e in ledger.events(incident_id)
    ]  # fmt: skip


def _jsonable(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in values.items()}
