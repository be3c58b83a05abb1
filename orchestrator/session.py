"""The ``Breach`` session: the project's Python API, one per process.

A :class:`Breach` owns what every operation shares: the ledger (one database engine, its schema
checked once when first used), the plugin host, the regimes table and the notifier settings. The
command line opens one per command, ``breach serve`` one per process, tests one per test; the
engine, the webhook intake and the demo receive it. Close it (or use it as a context manager)
to release the database connections::

    with Breach("sqlite:///breach.db") as breach:
        result = breach.trigger("credential-leak", audience="people.csv", mode="dry-run")
        print(breach.status(result.incident_id)["state"])

Every method raises :class:`~orchestrator.errors.BreachError` subclasses with messages a
commander can act on.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
import signal
import threading
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn

import yaml

from . import applicability, approvals, explain, sharing, shipped
from . import clocks as clocks_mod
from . import facts as facts_mod
from . import updates as updates_mod
from .audience import open_audience
from .campaign import Campaign, StepOutcome, read_redirect_file
from .errors import (
    BreachError,
    ConfigurationError,
    FactError,
    Forbidden,
    LedgerError,
    Problem,
    StateConflict,
)
from .events import IncidentEvent
from .ledger import Incident, Ledger, Step, StepState, now
from .ledger.chain import ChainReport
from .limits import MAX_ACTOR_CHARS, shortened
from .message import Message
from .notice import NoticeRenderer
from .notifier import Mode, Notifier
from .outbox import Outbox
from .playbook import UPDATE_MARK, Approval, BeforeDeadline, Playbook
from .pluginhost import PluginHost
from .receipts import ReceiptUpdate
from .regimes import Regime, load_regimes
from .schedule import deadlines, due_at, ordered_steps
from .summary import dry_run_summary
from .validation import load_playbook, validate_file, validate_text

if TYPE_CHECKING:
    from .dispatch import DispatchSettings
    from .engine import Engine, EngineReport


@dataclass
class TriggerResult:
    """What :meth:`Breach.trigger` did: the incident id and its summary.

    A dry run's summary is the report written to ``summary.json``; a live or sandbox incident's
    is its :meth:`Breach.status`.
    """

    incident_id: str
    summary: dict[str, Any]
    outcomes: list[StepOutcome] = field(default_factory=list)


def new_incident_id(aware_at: datetime) -> str:
    """``INC-20261130-a1b2c3``: the awareness date and a random suffix."""
    return f"INC-{aware_at:%Y%m%d}-{secrets.token_hex(3)}"


def _named(who: str) -> None:
    """Refuse a name (an approver, an actor) longer than the ledger keeps one."""
    if len(who) > MAX_ACTOR_CHARS:
        raise BreachError(f"a name of at most {MAX_ACTOR_CHARS} characters, please (this one "
                          f"has {len(who)}): the timeline records who did what by it")  # fmt: skip


class Breach:
    """One session over a ledger, a plugin host and a regimes table.

    ``db`` is the ledger's URL (default ``BREACH_DATABASE_URL``, else ``sqlite:///breach.db``).
    The plugin host is built from ``plugins_dir`` and ``settings`` (default: the environment)
    unless ``host`` is given. Nothing is opened until it is needed: a session that only
    validates playbooks never creates a database.
    """

    def __init__(
        self,
        db: str | None = None,
        *,
        host: PluginHost | None = None,
        plugins_dir: Path | None = None,
        settings: Mapping[str, str] | None = None,
        regimes_file: Path | None = None,
    ) -> None:
        self.db = db
        self.regimes_file = regimes_file
        self.regimes: dict[str, Regime] = load_regimes(regimes_file)
        self._host = host
        self._plugins_dir = plugins_dir
        self._settings = settings
        self._ledger: Ledger | None = None
        self._opening = threading.Lock()
        #: playbooks parsed in this session, by the digest of their text
        self._parsed: dict[str, Playbook] = {}

    # -- what the session owns ------------------------------------------------------------------

    @property
    def host(self) -> PluginHost:
        """The plugin host (loaded on first use)."""
        if self._host is None:
            self._host = PluginHost(plugins_dir=self._plugins_dir, settings=self._settings)
        return self._host

    @property
    def ledger(self) -> Ledger:
        """The ledger (opened, and its schema brought up to date, on first use)."""
        if self._ledger is None:
            with self._opening:  # the server's worker threads may ask at once
                if self._ledger is None:
                    self._ledger = Ledger(self.db)
        return self._ledger

    def close(self) -> None:
        """Release the database connections. The session can be opened again by using it."""
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None

    def __enter__(self) -> Breach:
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- playbooks ------------------------------------------------------------------------------

    def validate(self, paths: Sequence[Path]) -> list[Problem]:
        """Every problem of every playbook file, errors and warnings (``severity``): an empty
        list means all valid and every regulator report complete."""
        problems: list[Problem] = []
        for path in paths:
            warnings: list[Problem] = []
            problems += validate_file(path, host=self.host, regimes=self.regimes,
                                      warnings=warnings)[1]  # fmt: skip
            problems += warnings
        return problems

    def playbook(self, ref: str | Path) -> Playbook:
        """A valid playbook from a file path or the id of a shipped playbook.

        Raises :class:`~orchestrator.errors.ValidationFailed` with every problem of the file.
        """
        path = shipped.locate(ref)
        playbook = load_playbook(path, host=self.host, regimes=self.regimes)
        self._parsed[playbook_digest(playbook.source_text)] = playbook
        return playbook

    def recorded_playbook(self, incident: Incident) -> Playbook:
        """The playbook an incident was triggered with: the parse this session holds, else its
        recorded text validated again (an incident from before a restart)."""
        parsed = self._parsed.get(incident.playbook_digest)
        if parsed is not None:
            return parsed
        playbook, problems = validate_text(incident.playbook_text, f"{incident.id}:playbook",
                                           host=self.host, regimes=self.regimes)  # fmt: skip
        if playbook is None or problems:
            detail = "; ".join(str(p) for p in problems[:3])
            raise LedgerError(f"incident {incident.id}: its recorded playbook is invalid: {detail}")
        self._parsed[incident.playbook_digest] = playbook
        return playbook

    # -- incidents ------------------------------------------------------------------------------

    def trigger(
        self,
        playbook: Playbook | str | Path,
        *,
        audience: str,
        audience_options: Mapping[str, Any] | None = None,
        facts: Mapping[str, Any] | None = None,
        aware_at: datetime | None = None,
        mode: Mode = "dry-run",
        outbox: Path | None = None,
        redirect_to: Path | None = None,
        source: str = "cli",
        dedupe_key: str | None = None,
        events: Sequence[tuple[str, Mapping[str, Any]]] = (),
        actor: str = "orchestrator",
    ) -> TriggerResult:
        """Create an incident from a playbook (parsed, a path, or a shipped playbook's id).

        ``dry-run`` carries it out at once (time compressed) into ``outbox`` and nothing leaves
        the machine. ``live`` and ``sandbox`` schedule its steps in the ledger; the engine
        (:meth:`run`, ``breach serve``) fires them when due. A live incident is refused when a
        notifier it needs lacks settings.

        The incident, its steps, ``incident.triggered`` and ``events`` (``(kind, detail)``
        pairs, such as the alert that opened it, recorded as ``actor``) are written in one
        transaction: a failure leaves nothing behind.
        """
        _named(actor)
        if not isinstance(playbook, Playbook):
            playbook = self.playbook(playbook)
        text = playbook.source_text
        if not text:
            raise BreachError(f"playbook {playbook.id!r} has no source text to record")
        self.require_settings(playbook, mode)
        resolved = facts_mod.resolve(playbook.facts, dict(facts or {}))
        self.check_facts(playbook, resolved)
        aware = (aware_at or now()).astimezone(UTC)
        options = dict(audience_options or {})
        people = open_audience(audience, options, self.host.source_factory)
        incident_id = new_incident_id(aware)
        if mode == "dry-run":
            outbox = outbox or Path("outbox") / incident_id
        redirect = read_redirect_file(redirect_to) if redirect_to is not None else None
        digest = playbook_digest(text)
        self._parsed[digest] = playbook
        row = Incident(
            id=incident_id, playbook_id=playbook.id, playbook_version=str(playbook.version),
            playbook_text=text, playbook_digest=digest, title=playbook.title,
            severity=playbook.severity, mode=mode, state="running", aware_at=aware,
            created_at=now(), facts=facts_mod.jsonable(resolved), audience_spec=audience,
            audience_options=facts_mod.jsonable(options), outbox=str(outbox) if outbox else None,
            source=source, dedupe_key=dedupe_key, redirect_to=redirect,
        )  # fmt: skip
        timed = ordered_steps(playbook, aware, deadlines(playbook, aware, self.regimes))
        # Live, a step due before a deadline whose clock has not started waits for its event.
        waiting = set() if mode == "dry-run" else self._waiting_steps(playbook)
        steps = [
            Step(incident_id=incident_id, step_id=step.id, position=i, channel=step.channel,
                 due_at=None if step.id in waiting else at, detail={},
                 state=(StepState.WAITING if step.id in waiting else StepState.SCHEDULED).value)
            for i, (step, at) in enumerate(timed)
        ]  # fmt: skip
        triggered = {"playbook": playbook.id, "version": str(playbook.version), "mode": mode,
                     "source": source, "facts": sorted(resolved),
                     "redirected": bool(redirect)}  # fmt: skip
        opening = [IncidentEvent(incident_id, "incident.triggered", None, triggered, actor=actor)]
        opening += [IncidentEvent(incident_id, kind, None, dict(detail), actor=actor)
                    for kind, detail in events]  # fmt: skip
        self.ledger.add_incident(row, steps, opening)
        for event in opening:
            self.host.emit(event)
        box = Outbox(outbox) if outbox is not None else None
        campaign = Campaign(self, row, playbook=playbook, outbox=box, audience=people)
        if mode != "dry-run":
            return TriggerResult(incident_id, self.status(incident_id), [])
        outcomes = [campaign.run_step(step, at) for step, at in timed]
        counts = campaign.counts()
        total = campaign.audience_total if campaign.audience_total is not None else 0
        self.ledger.update_incident(incident_id, state="finished", audience_total=total)
        campaign.emit("incident.finished", mode=mode)
        assert box is not None
        counted = {"total": total, "regions": counts["regions"]}
        applying = applicability.applicable(playbook, self.regimes, resolved, counted)
        warnings = campaign.renderer.locale_gaps(campaign.locales)
        warnings += self._late_steps(
            playbook, applying, {"aware": aware, "discovered": aware},
            [(o.step.id, o.step.channel, o.due_at) for o in outcomes])  # fmt: skip
        summary = dry_run_summary(playbook, campaign.incident, outcomes, total, self.host,
                                  self.regimes, audience, box, applying, warnings)  # fmt: skip
        box.close(summary)
        return TriggerResult(incident_id, summary, outcomes)

    def require_settings(self, playbook: Playbook, mode: Mode = "live") -> None:
        """Pre-flight: refuse ``mode`` when a notifier a step (or fallback) needs lacks the
        settings sending in that mode reads. Every missing setting is named, never shown."""
        missing = {
            n.name: gaps
            for n in self._notifiers_of(playbook)
            if (gaps := n.missing_settings_for(mode))
        }
        if missing:
            listing = "; ".join(f"{n}: {', '.join(gaps)}" for n, gaps in sorted(missing.items()))
            other = "--dry-run" if mode == "sandbox" else "--dry-run / --sandbox"
            raise ConfigurationError(
                f"cannot send in {mode} mode, notifier settings missing ({listing}); set them "
                f"in the environment (or NAME_FILE), or use {other}"
            )

    def check_facts(self, playbook: Playbook, facts: Mapping[str, Any]) -> None:
        """Raise :class:`FactError` naming every problem the notifiers of ``playbook`` find in
        ``facts`` (a value a step would fail on when it fires)."""
        problems = [f"{problem} (read by {notifier.name})"
                    for notifier in self._notifiers_of(playbook)
                    for problem in type(notifier).check_facts(facts)]  # fmt: skip
        if problems:
            raise FactError("; ".join(dict.fromkeys(problems)))

    def _notifiers_of(self, playbook: Playbook) -> list[Notifier]:
        """The notifiers a playbook's steps and fallbacks use, each once, by name."""
        used: dict[str, Notifier] = {}
        for step in playbook.steps:
            targets = [(step.channel, step.notifier)]
            if step.fallback is not None:
                targets.append((step.fallback.channel, step.fallback.notifier))
            for channel, name in targets:
                notifier = self.host.notifier(channel, name)
                used[notifier.name] = notifier
        return [used[name] for name in sorted(used)]

    def incidents(self, limit: int = 50) -> list[dict[str, Any]]:
        """The most recent incidents, newest first."""
        return [
            {"id": i.id, "playbook": i.playbook_id, "mode": i.mode, "state": i.state,
             "aware_at": i.aware_at.isoformat(), "people": i.audience_total, "title": i.title}
            for i in self.ledger.incidents(limit)
        ]  # fmt: skip

    def status(self, incident_id: str) -> dict[str, Any]:
        """One incident: its steps with deliveries by state and ETA, and its deadlines, each
        explained (see :mod:`orchestrator.explain`): why a step did not fire or stopped, which
        roles an approval waits for, each notifier's circuit, reports filed against deadlines.
        Times are ISO; ``*_in_seconds`` count from ``now`` (negative: in the past)."""
        ledger = self.ledger
        incident = ledger.incident(incident_id)
        counts = ledger.delivery_counts(incident_id)
        reasons = ledger.reasons(incident_id)
        events = ledger.events(incident_id)
        current = now()
        playbook = None
        with contextlib.suppress(BreachError):  # status still shows an unreadable incident
            playbook = self.recorded_playbook(incident)
        rates = self._rates(playbook)
        step_rows = ledger.steps(incident_id)
        steps: list[dict[str, Any]] = []
        for s in step_rows:
            active = sum(counts.get(s.step_id, {}).get(k, 0) for k in ("pending", "sending"))
            rate = rates.get(s.step_id.partition(UPDATE_MARK)[0])
            why, waiting = explain.explain_step(s, playbook, events)
            steps.append({
                "step": s.step_id, "channel": s.channel, "state": s.state,
                "due_at": s.due_at.isoformat() if s.due_at else None,
                "due_in_seconds": _seconds(s.due_at, current),
                "deliveries": explain.split_counts(counts.get(s.step_id, {}),
                                                   reasons.get(s.step_id, {}),
                                                   dry_run=incident.mode == "dry-run"),
                "reasons": reasons.get(s.step_id, {}),
                "same_address": reasons.get(s.step_id, {}).get(sharing.SAME_ADDRESS, 0),
                "approved_by": s.approved_by, "why": why, "waiting_for": waiting,
                "eta_seconds": round(active / rate, 1) if rate and active else None,
                "rate_per_second": rate,
            })  # fmt: skip
        upcoming = [s for s in steps if s["state"] == StepState.SCHEDULED.value and s["due_at"]]
        legal: dict[str, Any] = {"deadlines": [], "clocks": [], "regimes": [], "warnings": []}
        if playbook is not None:
            legal = self._obligations(playbook, incident, current)
            filed = explain.filed(playbook, step_rows, counts)
            for row in legal["deadlines"]:
                row.update(_filing(row, filed.get(row["regulator"]), current))
        return {
            "id": incident.id, "playbook": incident.playbook_id,
            "version": incident.playbook_version, "title": incident.title, "mode": incident.mode,
            "state": incident.state, "aware_at": incident.aware_at.isoformat(),
            "now": current.isoformat(),
            "elapsed_hours": round((current - incident.aware_at).total_seconds() / 3600, 2),
            "people": incident.audience_total, "facts": incident.facts, "steps": steps,
            "next_step": min(upcoming, key=lambda s: s["due_at"])["step"] if upcoming else None,
            "circuits": explain.circuits(events, current),
            "updates": updates_mod.timeline_updates(events),
            **legal, "outbox": incident.outbox,
            "redirected": bool(incident.redirect_to),
            "possible_duplicates": ledger.reclaimed(incident_id),
            "workers": self.workers(),
        }  # fmt: skip

    def workers(self) -> dict[str, Any]:
        """The delivery workers (``breach run``, ``breach serve``) alive on this ledger: how
        many, and each one's id, host, process id, kind, start, last heartbeat and the moment
        it counts as dead without another (ISO)."""
        listed = [
            {"id": w["id"], "host": w["host"], "pid": w["pid"], "kind": w["kind"],
             **{k: w[k].isoformat() for k in ("started_at", "heartbeat_at", "alive_until")}}
            for w in self.ledger.live_workers()
        ]  # fmt: skip
        return {"live": len(listed), "list": listed}

    def _obligations(
        self, playbook: Playbook, incident: Incident, current: datetime
    ) -> dict[str, Any]:
        """What the law asks of an incident now: regulator deadlines, statutory clocks, the
        regimes that apply and why, and warnings (locales without a notice, steps to people
        due after an individual-notice deadline)."""
        events = self.timeline(incident.id)
        counted = applicability.recorded_counts(events)
        warnings = [] if counted is None else NoticeRenderer(playbook).locale_gaps(
            counted["locales"])  # fmt: skip
        applying = applicability.applicable(playbook, self.regimes, incident.facts, counted)
        happened = clocks_mod.started(incident.aware_at, events)
        due = deadlines(playbook, incident.aware_at, self.regimes, happened)
        deadline_rows = []
        for regulator in playbook.regulators:
            at = due.get(regulator.id)
            regime = self.regimes.get(regulator.regime)
            waiting = (regime.start_event if regime is not None and at is None
                       and regime.start_event not in happened else None)  # fmt: skip
            deadline_rows.append({
                "regulator": regulator.id, "name": regulator.name,
                "regime": regulator.regime, "due_at": at.isoformat() if at else None,
                "hours_left": round((at - current).total_seconds() / 3600, 1) if at else None,
                "waiting_for": waiting,
            })  # fmt: skip
        relevant = [a.regime for a in applying if a.applies is not False]
        clocks = self._clocks(playbook, happened, current, relevant)
        unfired = (StepState.SCHEDULED.value, StepState.AWAITING_APPROVAL.value)
        # Follow-ups correct a notice already given: they fall after its deadline by nature.
        timed = [(s.step_id, s.channel, s.due_at) for s in self.ledger.steps(incident.id)
                 if s.state in unfired and UPDATE_MARK not in s.step_id]  # fmt: skip
        warnings += self._late_steps(playbook, applying, happened, timed, current)
        return {"deadlines": deadline_rows, "clocks": [c.as_dict() for c in clocks],
                "regimes": [a.as_dict() for a in applying], "warnings": warnings}  # fmt: skip

    def _late_steps(
        self,
        playbook: Playbook,
        applying: Sequence[applicability.Applicability],
        happened: Mapping[str, datetime],
        timed: Sequence[tuple[str, str, datetime | None]],
        current: datetime | None = None,
    ) -> list[str]:
        """Warnings for steps to people due after the deadline of an individual-notice regime
        that applies (or may: its counts are not known yet)."""
        relevant = [a.regime for a in applying if a.applies is not False]
        clocks = self._clocks(playbook, happened, current or now(), relevant)
        individual = [r for r in relevant if self.regimes[r].individuals]
        return clocks_mod.late_steps(timed, clocks, individual)

    def _rates(self, playbook: Playbook | None) -> dict[str, float]:
        """Step id -> its notifier's default rate, for ETAs."""
        if playbook is None:
            return {}
        out = {}
        for step in playbook.steps:
            with contextlib.suppress(BreachError):
                out[step.id] = self.host.notifier(step.channel, step.notifier).default_rate
        return out

    def approve(
        self,
        incident_id: str,
        step_id: str,
        *,
        by: str,
        roles: Collection[str] | None = None,
        as_role: str | None = None,
        via: str = "cli",
        os_user: str | None = None,
    ) -> dict[str, Any]:
        """Approve a gated step (before or after it falls due), recorded with who and in which
        role; the gate opens once its quorum of roles approved (see :mod:`.approvals`).

        ``roles`` are an API token's roles, checked against the gate (None: the command line,
        which names its role with ``as_role`` when the gate has several). A caller without the
        role gets :class:`Forbidden`, and the attempt is recorded.
        """
        if not by.strip():
            raise BreachError("say who approves: --by NAME")
        _named(by)
        step, gate = self._gated(incident_id, step_id, "approve")
        origin = {"via": via, **({"os_user": os_user} if os_user else {})}
        if gate is None:  # no gate: approving ahead is recorded, as it always was
            if roles is not None and "commander" not in roles:
                refusal = Forbidden(f"approving step {step_id!r} needs the commander role")
                self._refuse(incident_id, step_id, by, origin, refusal)
            self.ledger.update_step(incident_id, step_id, approved_by=by, approved_at=now())
            self.ledger.record(IncidentEvent(incident_id, "step.approved", step_id, origin,
                                             actor=by))  # fmt: skip
            return {"incident": incident_id, "step": step_id, "approved_by": by,
                    "state": step.state, "open": True, "role": None, "missing": []}  # fmt: skip
        done = approvals.approved_roles(self.ledger.events(incident_id), step_id)
        try:
            role = approvals.decide(gate, step_id, roles=roles, as_role=as_role, done=done).role
        except Forbidden as exc:
            self._refuse(incident_id, step_id, by, origin, exc)
        if role in done:
            raise StateConflict(f"step {step_id!r} was already approved as {role} by {done[role]}")
        self.ledger.record(IncidentEvent(incident_id, "step.approved", step_id,
                                         {"role": role, **origin}, actor=by))  # fmt: skip
        done[role] = by
        counted = [r for r in gate.required_roles if r in done]
        opened = len(counted) >= gate.needed
        if opened:
            # a summary, shortened to fit: the timeline has each approval whole
            who = shortened(", ".join(f"{done[r]} ({r})" for r in counted), MAX_ACTOR_CHARS)
            self.ledger.update_step(incident_id, step_id, approved_by=who, approved_at=now())
        return {"incident": incident_id, "step": step_id, "approved_by": by, "role": role,
                "state": step.state, "open": opened,
                "missing": [r for r in gate.required_roles if r not in done]
                if not opened else []}  # fmt: skip

    def reject(
        self,
        incident_id: str,
        step_id: str,
        *,
        by: str,
        reason: str | None = None,
        roles: Collection[str] | None = None,
        as_role: str | None = None,
        via: str = "cli",
        os_user: str | None = None,
    ) -> dict[str, Any]:
        """Reject a step that has not fired: it is cancelled and never fires. A gated step is
        rejected by one of its roles (checked like :meth:`approve`); any other by a commander."""
        if not by.strip():
            raise BreachError("say who rejects: --by NAME")
        _named(by)
        _step, gate = self._gated(incident_id, step_id, "reject")
        origin = {"via": via, **({"os_user": os_user} if os_user else {})}
        role = None
        if gate is None:
            if roles is not None and "commander" not in roles:
                refusal = Forbidden(f"rejecting step {step_id!r} needs the commander role")
                self._refuse(incident_id, step_id, by, origin, refusal)
        else:
            try:
                role = approvals.decide(gate, step_id, roles=roles, as_role=as_role,
                                        verb="reject").role  # fmt: skip
            except Forbidden as exc:
                self._refuse(incident_id, step_id, by, origin, exc)
        self.ledger.update_step(incident_id, step_id, state=StepState.CANCELLED.value,
                                finished_at=now())  # fmt: skip
        detail = {"role": role, "reason": reason, **origin}
        event = IncidentEvent(incident_id, "step.rejected", step_id, detail, actor=by)
        self.ledger.record(event)
        self.host.emit(event)
        return {"incident": incident_id, "step": step_id, "rejected_by": by, "role": role,
                "state": StepState.CANCELLED.value}  # fmt: skip

    def _gated(self, incident_id: str, step_id: str, verb: str) -> tuple[Step, Approval | None]:
        """The step, if it can still be approved or rejected, and its playbook gate."""
        step = self.ledger.step(incident_id, step_id)
        if step.state not in (
            StepState.SCHEDULED.value,
            StepState.AWAITING_APPROVAL.value,
            StepState.WAITING.value,
        ):
            raise StateConflict(
                f"step {step_id!r} of {incident_id} is {step.state}: nothing to {verb}"
            )
        if step.approved_by:
            raise StateConflict(f"step {step_id!r} was already approved by {step.approved_by}")
        spec = self._shape(self.ledger.incident(incident_id)).step(step_id)
        return step, spec.approval if spec is not None else None

    def _shape(self, incident: Incident) -> Playbook:
        """The incident's playbook, validated if this session can (its plugins installed), else
        read for its shape only: gates and steps are known without the notifiers."""
        try:
            return self.recorded_playbook(incident)
        except BreachError:
            try:
                return Playbook.model_validate(yaml.safe_load(incident.playbook_text))
            except (yaml.YAMLError, ValueError) as exc:
                raise LedgerError(f"incident {incident.id}: its recorded playbook cannot be "
                                  f"read: {exc}") from None  # fmt: skip

    def _refuse(
        self, incident_id: str, step_id: str, by: str, origin: Mapping[str, Any], exc: Forbidden
    ) -> NoReturn:
        """Record a refused approval or rejection, then raise it."""
        detail = {"error": str(exc), **origin}
        self.ledger.record(IncidentEvent(incident_id, "step.approval_refused", step_id, detail,
                                         actor=by))  # fmt: skip
        raise exc

    def cancel(self, incident_id: str, *, by: str, reason: str | None = None) -> dict[str, Any]:
        """Stop an incident cleanly: unfired steps cancelled, pending deliveries skipped."""
        _named(by)
        why = f"cancelled by {by}" + (f": {reason}" if reason else "")
        skipped = self.ledger.cancel(incident_id, why)
        detail = {"reason": reason, "skipped": skipped}
        self.ledger.record(IncidentEvent(incident_id, "incident.cancelled", None, detail, actor=by))
        return {"incident": incident_id, "skipped": skipped, "reason": why}

    def update(
        self,
        incident_id: str,
        facts: Mapping[str, Any],
        *,
        reason: str | None = None,
        by: str = "orchestrator",
        via: str = "cli",
    ) -> dict[str, Any]:
        """Correct or complete an incident's facts (update 1, 2, ...) and owe a follow-up.

        ``facts`` must be facts the playbook declares (given as text or typed values, checked
        like facts at trigger, by the notifiers too). ``incident.updated`` records each changed
        fact with its old and new value, the reason and who. The playbook's ``on_update`` steps
        are scheduled as ``STEP@N`` (their ``at`` counting from now) and go only to people who
        received an earlier notice (see :mod:`orchestrator.updates`); a finished incident runs
        again for them, a dry-run one renders them at once into ``OUTBOX/update-N/``. Refused,
        with nothing written, for an unknown or cancelled incident, an undeclared fact, a bad
        value, or facts that already hold the values given.
        """
        _named(by)
        result = updates_mod.record_update(self, incident_id, facts, reason=reason, by=by, via=via)
        incident = self.ledger.incident(incident_id)
        if incident.mode == "dry-run" and result["follow_ups"]:
            steps = [f["step"] for f in result["follow_ups"]]
            result["outbox"] = self._render_follow_ups(incident, result["number"], steps)
        return result

    def _render_follow_ups(self, incident: Incident, number: int, steps: Sequence[str]) -> str:
        """A dry-run incident's follow-ups for update ``number``, rendered at once (time
        compressed, like its trigger) into ``OUTBOX/update-N/``."""
        folder = Path(incident.outbox or Path("outbox") / incident.id) / f"update-{number}"
        box = Outbox(folder)
        campaign = Campaign(self, incident, outbox=box)
        outcomes = []
        for step_id in steps:
            spec = campaign.playbook.step(step_id)
            assert spec is not None  # scheduled from this very playbook
            outcomes.append(campaign.run_step(spec, now()))
        box.close({
            "incident": incident.id, "update": number,
            "steps": [{"step": o.step.id, "channel": o.step.channel, "fired": o.fired,
                       "note": o.note, **(o.tally.as_dict() if o.tally else {})}
                      for o in outcomes],
        })  # fmt: skip
        return str(folder)

    def find_open_incident(self, dedupe_key: str) -> str | None:
        """The id of the newest incident opened for ``dedupe_key`` that is not closed, or None."""
        return self.ledger.open_incident(dedupe_key)

    def facts(self, incident_id: str) -> dict[str, Any]:
        """An incident's current facts."""
        return dict(self.ledger.incident(incident_id).facts)

    def record(
        self,
        incident_id: str,
        kind: str,
        *,
        detail: Mapping[str, Any] | None = None,
        facts: Mapping[str, Any] | None = None,
        actor: str = "orchestrator",
    ) -> None:
        """Record an event on an incident's timeline; ``facts`` are merged in (a new facts
        version) and observers are told.

        Facts added later never re-render what was already sent: each delivery keeps the facts
        version it was rendered with.
        """
        _named(actor)
        incident = self.ledger.incident(incident_id)
        event_detail = dict(detail or {})
        if facts:
            facts_mod.check_values(facts)
            merged = {**incident.facts, **facts_mod.jsonable(facts)}
            self.check_facts(self.recorded_playbook(incident), merged)
            self.ledger.update_incident(incident_id, facts=merged,
                                        facts_version=incident.facts_version + 1)  # fmt: skip
            event_detail["facts"] = sorted(facts)
        event = IncidentEvent(incident_id, kind, None, event_detail, actor=actor)
        self.ledger.record(event)
        self.host.emit(event)

    def timeline(self, incident_id: str) -> list[dict[str, Any]]:
        """Every audit event of an incident, oldest first."""
        self.ledger.incident(incident_id)  # NotFound for an unknown id
        return [
            {"at": e.at.isoformat(), "kind": e.kind, "step": e.step_id, "actor": e.actor,
             "detail": e.detail, "row": e.id, "hash": e.hash}
            for e in self.ledger.events(incident_id)
        ]  # fmt: skip

    def verify_audit(self, incident_id: str) -> ChainReport:
        """Walk the incident's hash-chained audit trail; the report names the first row that
        breaks it (edited, removed or inserted after it was written)."""
        self.ledger.incident(incident_id)  # NotFound for an unknown id
        return self.ledger.verify_chain(incident_id)

    def evidence(self, incident_id: str, path: Path) -> dict[str, Any]:
        """Write the incident's evidence bundle (a zip, see :mod:`orchestrator.evidence`) to
        ``path``; returns its manifest."""
        from .evidence import write_bundle

        return write_bundle(self, incident_id, path)

    def record_event(
        self, incident_id: str, event: str, *, at: datetime | None = None, by: str
    ) -> dict[str, Any]:
        """Record that ``event`` happened (``determined``, ``assessed``, ``discovered``,
        ``filed:REGIME``) at ``at`` (default now), recorded by ``by``: it starts the clocks of
        the regimes that count from it. Recording an event again corrects its time."""
        if not by.strip():
            raise BreachError("say who records the event: --by NAME")
        _named(by)
        name = clocks_mod.event_name(event)
        if name.startswith("filed:") and name.removeprefix("filed:") not in self.regimes:
            regime = name.removeprefix("filed:")
            raise BreachError(f"unknown regime {regime!r} in {name!r}; see `breach regimes`")
        if at is not None and at.tzinfo is None:
            raise BreachError("give the event's time with its UTC offset: 2026-12-24T15:00-05:00")
        when = (at or now()).astimezone(UTC)
        if when > now() + timedelta(minutes=5):  # a little leeway for clocks that differ
            raise BreachError(f"{name} at {when.isoformat()} is in the future: record it then")
        incident = self.ledger.incident(incident_id)
        if when < incident.aware_at and name != "discovered":
            raise BreachError(
                f"{name} at {when.isoformat()} is before the incident's awareness "
                f"({incident.aware_at.isoformat()})"
            )
        detail = {"event": name, "occurred_at": when.isoformat()}
        record = IncidentEvent(incident_id, clocks_mod.EVENT_KIND, None, detail, actor=by)
        self.ledger.record(record)
        self.host.emit(record)
        rescheduled = self._reschedule(incident)
        return {"incident": incident_id, "event": name, "at": when.isoformat(), "by": by,
                "rescheduled": rescheduled}  # fmt: skip

    def _waiting_steps(
        self, playbook: Playbook, happened: Mapping[str, datetime] | None = None
    ) -> set[str]:
        """Ids of the steps due before a regulator deadline whose starting event (of those in
        ``happened``; default: awareness only) has not happened."""
        started = set(happened or ("aware", "discovered"))
        out = set()
        for step in playbook.steps:
            if isinstance(step.at, BeforeDeadline):
                regulator = playbook.regulator(step.at.before_deadline)
                regime = self.regimes.get(regulator.regime) if regulator is not None else None
                if regime is not None and regime.start_event not in started:
                    out.add(step.id)
        return out

    def _reschedule(self, incident: Incident) -> list[dict[str, Any]]:
        """After an event: steps due before a deadline get their due time from the clocks as
        they now stand (a waiting step is scheduled once its clock runs)."""
        if incident.mode == "dry-run" or incident.state not in ("open", "running"):
            return []
        playbook = self.recorded_playbook(incident)
        happened = clocks_mod.started(incident.aware_at, self.timeline(incident.id))
        due = deadlines(playbook, incident.aware_at, self.regimes, happened)
        still = self._waiting_steps(playbook, happened)
        changed = []
        movable = (StepState.WAITING.value, StepState.SCHEDULED.value)
        for row in self.ledger.steps(incident.id):
            step = playbook.step(row.step_id)
            if step is None or row.state not in movable or not isinstance(step.at, BeforeDeadline):
                continue
            if step.id in still:
                continue
            at = due_at(step, incident.aware_at, due)
            if row.state == StepState.SCHEDULED.value and row.due_at == at:
                continue
            self.ledger.update_step(incident.id, step.id, state=StepState.SCHEDULED.value,
                                    due_at=at)  # fmt: skip
            changed.append({"step": step.id, "due_at": at.isoformat()})
            self.ledger.record(IncidentEvent(incident.id, "step.rescheduled", step.id,
                                             {"due_at": at.isoformat()}))  # fmt: skip
        return changed

    def clocks(self, incident_id: str) -> list[dict[str, Any]]:
        """The statutory clocks of an incident's regimes: started or waiting, and when due."""
        incident = self.ledger.incident(incident_id)
        clocks: list[dict[str, Any]] = self._obligations(
            self.recorded_playbook(incident), incident, now()
        )["clocks"]
        return clocks

    def _clocks(
        self,
        playbook: Playbook,
        happened: Mapping[str, datetime],
        current: datetime,
        also: Sequence[str] = (),
    ) -> list[clocks_mod.Clock]:
        """One clock per regime the playbook's regulators name (their deadline overrides), then
        one per regime of ``also`` (those that apply, or may)."""
        out: dict[str, clocks_mod.Clock] = {}
        for regulator in playbook.regulators:
            regime = self.regimes.get(regulator.regime)
            if regime is not None and regulator.regime not in out:
                out[regulator.regime] = clocks_mod.clock(
                    regulator.regime, regime, happened, current, regulator.deadline
                )
        for key in also:
            if key not in out and key in self.regimes:
                out[key] = clocks_mod.clock(key, self.regimes[key], happened, current)
        return list(out.values())

    def regulator_message(
        self, incident_id: str, regulator_id: str, step_id: str | None = None
    ) -> Message:
        """The message a regulator step of the incident files (``step_id``, else the first
        step filing to ``regulator_id``), built as the dispatcher builds it."""
        from .fanout import delivery_key

        incident = self.ledger.incident(incident_id)
        playbook = self.recorded_playbook(incident)
        regulator = playbook.regulator(regulator_id)
        if regulator is None:
            known = ", ".join(r.id for r in playbook.regulators) or "none"
            raise BreachError(f"playbook {playbook.id!r} has no regulator {regulator_id!r} "
                              f"(its regulators: {known})")  # fmt: skip
        if regulator.regime not in self.regimes:
            raise BreachError(
                f"regulator {regulator_id!r} names unknown regime {regulator.regime!r}"
            )
        steps = [s for s in playbook.steps if s.regulator == regulator_id]
        if step_id is not None:
            steps = [s for s in steps if s.id == step_id]
            if not steps:
                raise BreachError(f"no step {step_id!r} files to regulator {regulator_id!r}")
        step = steps[0].id if steps else f"{regulator_id}-report"
        campaign = Campaign(self, incident, playbook=playbook)
        notices = campaign.public_notices()
        return Message(
            delivery_id=delivery_key(incident_id, step, f"regulator:{regulator_id}"),
            step_id=step, channel="regulator", incident=campaign.incident,
            notice=notices[playbook.default_locale], notices=notices, regulator=regulator_id,
        )  # fmt: skip

    def report(
        self, incident_id: str, regulator_id: str, step_id: str | None = None
    ) -> dict[str, Any]:
        """The report to ``regulator_id`` as it would be filed now: ``report`` (its JSON),
        ``complete``, the ``missing`` items, ``schema_errors`` against the regime's JSON
        Schema, ``items`` (each with where it comes from) and ``warnings``."""
        from .reporting import build_report

        message = self.regulator_message(incident_id, regulator_id, step_id)
        built = build_report(message, now())
        data = built.data
        return {"incident": incident_id, "regulator": regulator_id,
                "regime": data["regulator"]["regime"], "step": message.step_id,
                "phase": data["report_phase"], "schema": data["schema"],
                "complete": not built.missing and not built.schema_errors,
                "missing": built.missing, "schema_errors": built.schema_errors,
                "items": [i.as_dict() for i in built.checks], "warnings": built.warnings,
                "report": data}  # fmt: skip

    def render_report_html(
        self, incident_id: str, regulator_id: str, step_id: str | None = None
    ) -> str:
        """The printable HTML of the report, rendered by the installed regulator notifier."""
        message = self.regulator_message(incident_id, regulator_id, step_id)
        playbook = self.recorded_playbook(self.ledger.incident(incident_id))
        step = playbook.step(message.step_id)
        notifier = self.host.notifier("regulator", step.notifier if step else None)
        page = notifier.build_payload(message).get("html")
        if not isinstance(page, str):
            raise BreachError(f"notifier {notifier.name!r} renders no HTML report")
        return page

    def report_check(self, incident_id: str, regulator_id: str) -> dict[str, Any]:
        """Whether the incident gives every item a report to ``regulator_id`` must state
        (``complete``), item by item, with the missing ones named (see :meth:`report`)."""
        return self.report(incident_id, regulator_id)

    def deadline(self, regime_id: str, start: datetime) -> dict[str, Any]:
        """When ``regime_id``'s deadline falls due for a clock started at ``start``."""
        regime = self.regimes.get(regime_id)
        if regime is None:
            raise BreachError(f"unknown regime {regime_id!r}; see `breach regimes`")
        if start.tzinfo is None:
            raise BreachError("give the clock's start with its UTC offset: 2026-12-24T15:00-05:00")
        due = clocks_mod.regime_due(regime, start)
        return {
            "regime": regime_id, "name": regime.name, "statute": regime.statute,
            "rule": str(regime.deadline), "clock": regime.clock,
            "timezone": regime.timezone, "holidays": regime.holidays,
            "from": start.astimezone(regime.zone).isoformat(),
            "due_at": due.isoformat() if due is not None else None,
        }  # fmt: skip

    def notices(self, incident_id: str) -> dict[str, dict[str, str]]:
        """Locale -> the incident's notice as the public reads it (subject and sections),
        rendered with its current facts."""
        campaign = Campaign(self, self.ledger.incident(incident_id))
        shared = campaign._shared()
        out: dict[str, dict[str, str]] = {}
        for locale in campaign.playbook.notice:
            notice = campaign.renderer.render_public(locale, shared)
            out[locale] = {"subject": notice.subject, **dict(notice.sections())}
        return out

    def deliveries_by_channel(self, incident_id: str) -> dict[str, dict[str, int]]:
        """Channel -> delivery state -> count, for one incident."""
        return self.ledger.delivery_counts(incident_id, by="channel")

    def apply_receipts(
        self, updates: Iterable[ReceiptUpdate], *, notifiers: Collection[str] | None = None
    ) -> int:
        """Apply provider receipts to their deliveries (of ``notifiers`` only, when given);
        returns how many deliveries changed. See :meth:`Ledger.apply_receipts`."""
        return self.ledger.apply_receipts(updates, notifiers=notifiers)

    # -- delivery -------------------------------------------------------------------------------

    def engine(
        self,
        settings: DispatchSettings | None = None,
        *,
        on_tick: Callable[[Engine], None] | None = None,
        kind: str = "run",
    ) -> Engine:
        """A delivery engine over this session (start it in a running event loop); ``kind``
        (``run`` or ``serve``) is how the worker registry shows the process."""
        from .engine import Engine

        return Engine(self, settings=settings, on_tick=on_tick, kind=kind)

    def run(
        self,
        settings: DispatchSettings | None = None,
        *,
        until_idle: bool = False,
        on_tick: Callable[[Engine], None] | None = None,
    ) -> EngineReport:
        """Carry out every live incident in the ledger: fire due steps, deliver, settle.

        Runs until SIGINT/SIGTERM, or with ``until_idle`` until nothing can happen without a
        future step falling due or someone approving a gated step. Safe to kill at any moment.
        """
        engine = self.engine(settings, on_tick=on_tick)

        async def main() -> EngineReport:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, engine.request_stop)
            return await engine.run(until_idle=until_idle)

        return asyncio.run(main())


def _seconds(at: datetime | None, current: datetime) -> float | None:
    """Seconds from ``current`` to ``at`` (negative: past), or None."""
    return round((at - current).total_seconds(), 1) if at is not None else None


def playbook_digest(text: str) -> str:
    """The SHA-256 of a playbook's text: what an incident records to name its exact version."""
    return hashlib.sha256(text.encode()).hexdigest()


def _filing(row: Mapping[str, Any], filed_at: str | None, current: datetime) -> dict[str, Any]:
    """A deadline row's state against the regulator report: filed (and how early), open or
    overdue."""
    due = datetime.fromisoformat(row["due_at"]) if row.get("due_at") else None
    state = "filed" if filed_at else "open" if due is None or due > current else "overdue"
    early = None
    if due is not None and filed_at:
        early = round((due - datetime.fromisoformat(filed_at)).total_seconds() / 3600, 1)
    return {"state": state, "filed_at": filed_at, "filed_before_deadline_hours": early}
