"""The Python API under the CLI and the server: validate, trigger, status.

Each function takes plain values, returns plain data (dataclasses / dicts), and raises
:class:`~orchestrator.errors.BreachError` subclasses with messages a commander can act on.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import facts as facts_mod
from .audience import open_audience
from .campaign import Campaign, StepOutcome, read_redirect_file
from .dispatch import DispatchSettings
from .durations import format_duration
from .engine import Engine, EngineReport
from .errors import BreachError, ConfigurationError, Problem
from .events import IncidentEvent
from .ledger import Incident, Ledger, Step, StepState, now
from .message import IncidentContext
from .notifier import Mode
from .outbox import Outbox
from .playbook import Playbook
from .pluginhost import PluginHost
from .regimes import Regime, load_regimes
from .schedule import deadlines, ordered_steps
from .validation import load_playbook, validate_file, validate_text


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
    mode: Mode = "dry-run",
    outbox: Path | None = None,
    redirect_to: Path | None = None,
    db: str | None = None,
    host: PluginHost | None = None,
    regimes_file: Path | None = None,
    source: str = "cli",
    dedupe_key: str | None = None,
) -> TriggerResult:
    """Create an incident from a playbook.

    ``dry-run`` carries it out at once (time compressed) into ``outbox`` and nothing leaves the
    machine. ``live`` and ``sandbox`` schedule its steps in the ledger; the engine (``breach
    run`` or ``breach serve``) fires them when due. A live incident is refused when a notifier it
    needs lacks settings.
    """
    host = host or PluginHost()
    regimes = load_regimes(regimes_file)
    playbook = load_playbook(playbook_path, host=host, regimes=regimes)
    if mode != "dry-run":
        require_settings(playbook, host)
    resolved = facts_mod.resolve(playbook.facts, dict(facts or {}))
    aware = (aware_at or now()).astimezone(UTC)
    ledger = Ledger(db)
    options = dict(audience_options or {})
    people = open_audience(audience, options, host.source_factory)
    incident_id = new_incident_id(aware)
    text = playbook_path.read_text("utf-8")
    if mode == "dry-run":
        outbox = outbox or Path("outbox") / incident_id
    redirect = read_redirect_file(redirect_to) if redirect_to is not None else None
    row = Incident(
        id=incident_id, playbook_id=playbook.id, playbook_version=str(playbook.version),
        playbook_text=text, playbook_digest=hashlib.sha256(text.encode()).hexdigest(),
        title=playbook.title, severity=playbook.severity, mode=mode, state="running",
        aware_at=aware, created_at=now(), facts=_jsonable(resolved), audience_spec=audience,
        audience_options=_jsonable(options), outbox=str(outbox) if outbox else None,
        source=source, dedupe_key=dedupe_key, redirect_to=redirect,
    )  # fmt: skip
    timed = ordered_steps(playbook, aware, deadlines(playbook, aware, regimes))
    steps = [
        Step(incident_id=incident_id, step_id=step.id, position=i, channel=step.channel,
             due_at=at, state=StepState.SCHEDULED.value, detail={})
        for i, (step, at) in enumerate(timed)
    ]  # fmt: skip
    ledger.add_incident(row, steps)
    box = Outbox(outbox) if outbox is not None else None
    campaign = Campaign(host=host, ledger=ledger, incident=row, regimes=regimes, outbox=box,
                        audience=people)  # fmt: skip
    campaign.emit("incident.triggered", playbook=playbook.id, version=str(playbook.version),
                  mode=mode, source=source, facts=sorted(resolved),
                  redirected=bool(redirect))  # fmt: skip
    if mode != "dry-run":
        return TriggerResult(incident_id, status(incident_id, db=db), [])
    outcomes = [campaign.run_step(step, at) for step, at in timed]
    total = campaign.audience_total if campaign.audience_total is not None else 0
    ledger.update_incident(incident_id, state="finished", audience_total=total)
    campaign.emit("incident.finished", mode=mode)
    assert box is not None
    summary = build_summary(playbook, campaign.incident, outcomes, total, host, regimes,
                            audience, box)  # fmt: skip
    box.close(summary)
    return TriggerResult(incident_id, summary, outcomes)


def require_settings(playbook: Playbook, host: PluginHost) -> None:
    """Refuse to go live when a notifier a step needs lacks settings (named, never shown)."""
    missing: dict[str, list[str]] = {}
    for step in playbook.steps:
        channels = [(step.channel, step.notifier)]
        if step.fallback is not None:
            channels.append((step.fallback.channel, step.fallback.notifier))
        for channel, name in channels:
            notifier = host.notifier(channel, name)
            if gaps := notifier.missing_settings():
                missing[notifier.name] = gaps
    if missing:
        listing = "; ".join(f"{name}: {', '.join(gaps)}" for name, gaps in sorted(missing.items()))
        raise ConfigurationError(
            f"cannot go live, notifier settings missing ({listing}); set them in the "
            "environment (or NAME_FILE), or use --dry-run / --sandbox"
        )


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


def status(
    incident_id: str | None = None, *, db: str | None = None, host: PluginHost | None = None
) -> dict[str, Any]:
    """One incident's steps, deliveries by state, ETAs and deadlines; or the recent incidents."""
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
    playbook = None
    with contextlib.suppress(BreachError):
        playbook, _ = validate_text(incident.playbook_text, incident.id)
    rates = _rates(playbook, host)
    steps = []
    for s in ledger.steps(incident_id):
        active = sum(counts.get(s.step_id, {}).get(k, 0) for k in ("pending", "sending"))
        rate = rates.get(s.step_id)
        steps.append({
            "step": s.step_id, "channel": s.channel, "state": s.state,
            "due_at": s.due_at.isoformat() if s.due_at else None,
            "deliveries": counts.get(s.step_id, {}), "reasons": reasons.get(s.step_id, {}),
            "approved_by": s.approved_by,
            "eta_seconds": round(active / rate, 1) if rate and active else None,
        })  # fmt: skip
    deadline_rows = []
    if playbook is not None:
        due = deadlines(playbook, incident.aware_at, load_regimes())
        for regulator in playbook.regulators:
            at = due.get(regulator.id)
            deadline_rows.append({
                "regulator": regulator.id, "name": regulator.name, "regime": regulator.regime,
                "due_at": at.isoformat() if at else None,
                "hours_left": round((at - current).total_seconds() / 3600, 1) if at else None,
            })  # fmt: skip
    return {
        "id": incident.id, "playbook": incident.playbook_id,
        "version": incident.playbook_version, "title": incident.title, "mode": incident.mode,
        "state": incident.state, "aware_at": incident.aware_at.isoformat(),
        "elapsed_hours": round((current - incident.aware_at).total_seconds() / 3600, 2),
        "people": incident.audience_total, "facts": incident.facts, "steps": steps,
        "deadlines": deadline_rows, "outbox": incident.outbox,
        "redirected": bool(incident.redirect_to),
        "possible_duplicates": ledger.reclaimed(incident_id),
    }  # fmt: skip


def _rates(playbook: Playbook | None, host: PluginHost | None) -> dict[str, float]:
    """Step id -> its notifier's default rate, for ETAs (empty when plugins are not loaded)."""
    if playbook is None or host is None:
        return {}
    out = {}
    for step in playbook.steps:
        with contextlib.suppress(BreachError):
            out[step.id] = host.notifier(step.channel, step.notifier).default_rate
    return out


def run(
    *,
    db: str | None = None,
    host: PluginHost | None = None,
    settings: DispatchSettings | None = None,
    until_idle: bool = False,
    regimes_file: Path | None = None,
    on_tick: Callable[[Engine], None] | None = None,
) -> EngineReport:
    """Carry out every live incident in the ledger: fire due steps, deliver, settle receipts.

    Runs until SIGINT/SIGTERM, or with ``until_idle`` until nothing can happen without a future
    step falling due or someone approving a gated step. Safe to kill at any moment.
    """
    engine = Engine(db=db, host=host, settings=settings, regimes_file=regimes_file,
                    on_tick=on_tick)  # fmt: skip

    async def main() -> EngineReport:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, engine.request_stop)
        return await engine.run(until_idle=until_idle)

    return asyncio.run(main())


def approve(incident_id: str, step_id: str, *, by: str, db: str | None = None) -> dict[str, Any]:
    """Open an approval gate (before or after the step falls due); recorded with who did it."""
    if not by.strip():
        raise BreachError("say who approves: --by NAME")
    ledger = Ledger(db)
    step = ledger.step(incident_id, step_id)
    if step.state not in (StepState.SCHEDULED.value, StepState.AWAITING_APPROVAL.value):
        raise BreachError(f"step {step_id!r} of {incident_id} is {step.state}: nothing to approve")
    if step.approved_by:
        raise BreachError(f"step {step_id!r} was already approved by {step.approved_by}")
    ledger.update_step(incident_id, step_id, approved_by=by, approved_at=now())
    ledger.record(IncidentEvent(incident_id, "step.approved", step_id, {}, actor=by))
    return {"incident": incident_id, "step": step_id, "approved_by": by, "state": step.state}


def cancel(
    incident_id: str, *, by: str, reason: str | None = None, db: str | None = None
) -> dict[str, Any]:
    """Stop an incident cleanly: unfired steps cancelled, pending deliveries skipped."""
    ledger = Ledger(db)
    why = f"cancelled by {by}" + (f": {reason}" if reason else "")
    skipped = ledger.cancel(incident_id, why)
    ledger.record(IncidentEvent(incident_id, "incident.cancelled", None,
                                {"reason": reason, "skipped": skipped}, actor=by))  # fmt: skip
    return {"incident": incident_id, "skipped": skipped, "reason": why}


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
        ledger.update_incident(incident_id, facts=merged, facts_version=incident.facts_version + 1)
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
