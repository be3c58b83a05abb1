"""A campaign: one incident's steps carried out against its audience.

The same code serves both modes. Dry-run compresses time: every step fires at once in due order,
approval gates are noted rather than awaited, and messages go to the outbox. Live (and sandbox)
steps fire when the engine's clock says so, wait at approval gates, and leave ``pending``
deliveries for the dispatcher, which rebuilds each message from its ledger row.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import conditions
from .applicability import COUNTED_KIND, RegionCounts, count_regions
from .audience import AudienceSource, Recipient, open_audience
from .events import IncidentEvent
from .fanout import FanOut, StepTally
from .ledger import FALLBACK_SUFFIX, DeliveryState, Incident, StepState, now
from .limits import read_document
from .message import IncidentContext, Message, RenderedNotice
from .notice import NoticeRenderer
from .outbox import Outbox
from .playbook import Playbook, Step
from .regimes import Regime
from .reporting import LedgerRecords, regulator_entries
from .schedule import deadlines
from .updates import FollowUps, update_number

if TYPE_CHECKING:
    from .session import Breach

#: a notifier's contact field and a step's fan-out (``Campaign.message_for``)
_Plan = tuple[str | None, FanOut]


@dataclass
class StepOutcome:
    """What firing one step did."""

    step: Step
    due_at: datetime
    fired: bool
    condition_result: bool | None = None
    tally: StepTally | None = None
    note: str = ""
    waiting_for_approval: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def incident_context(
    playbook: Playbook,
    incident: Incident,
    regimes: Mapping[str, Regime],
    records: Mapping[str, Any] | None = None,
) -> IncidentContext:
    """What every message of the incident shares, from its ledger row; ``records`` is what
    the ledger holds about it, read by regulator reports."""
    due = deadlines(playbook, incident.aware_at, dict(regimes))
    regulators = regulator_entries(playbook.regulators, playbook.steps, regimes)
    return IncidentContext(
        incident_id=incident.id, playbook_id=playbook.id,
        playbook_version=str(playbook.version), title=playbook.title,
        severity=playbook.severity, aware_at=incident.aware_at, facts=dict(incident.facts),
        organisation=playbook.organisation.model_dump(), mode=incident.mode,  # type: ignore[arg-type]
        regulators=regulators, deadlines=due, records=records or {},
    )  # fmt: skip


class Campaign:
    """One incident, loaded from its ledger row: fires steps and rebuilds messages."""

    def __init__(
        self,
        breach: Breach,
        incident: Incident,
        *,
        playbook: Playbook | None = None,
        outbox: Outbox | None = None,
        audience: AudienceSource | None = None,
    ) -> None:
        """``playbook`` is the parsed playbook when the caller holds it (a trigger); without
        it, the one the incident recorded is used (parsed again after a restart)."""
        self.host = breach.host
        self.ledger = breach.ledger
        self.row = incident
        self.playbook = playbook = playbook or breach.recorded_playbook(incident)
        self.incident = incident_context(
            playbook, incident, breach.regimes, LedgerRecords(breach.ledger, incident.id)
        )
        self.renderer = NoticeRenderer(playbook)
        self._audience = audience
        self.incident_vars = {"id": incident.id, "aware_at": incident.aware_at,
                              "notice_date": now(), "title": playbook.title}  # fmt: skip
        self.fanout = FanOut(
            host=self.host, ledger=self.ledger, playbook=playbook, renderer=self.renderer,
            incident=self.incident, incident_vars=self.incident_vars, outbox=outbox,
            redirect=_redirect_table(incident.redirect_to),
        )  # fmt: skip
        #: the follow-ups of the incident's updates (``STEP@N`` steps), loaded on first use
        self.follow_ups = FollowUps(self)
        self.audience_total: int | None = incident.audience_total
        #: people per region and per locale ("" for none), once counted
        self.regions: dict[str, int] | None = None
        self.locales: dict[str, int] = {}
        #: (step, notifier) -> what rebuilding their rows shares (see ``message_for``)
        self._plans: dict[tuple[str, str], _Plan] = {}

    @property
    def audience(self) -> AudienceSource:
        """Opened on first use: dispatch rebuilds messages without reading the audience."""
        if self._audience is None:
            self._audience = open_audience(
                self.row.audience_spec, self.row.audience_options, self.host.source_factory
            )
        return self._audience

    @property
    def facts_version(self) -> int:
        return self.row.facts_version

    def emit(self, kind: str, step_id: str | None = None, **detail: Any) -> None:
        event = IncidentEvent(self.incident.incident_id, kind, step_id, detail)
        self.ledger.record(event)
        self.host.emit(event)

    def count_audience(self) -> dict[str, int]:
        """People per region (and per locale, in :attr:`locales`): read back from the
        timeline, else counted by streaming the audience once and recorded there
        (``audience.counted``) for status and evidence."""
        if self.regions is None:
            for event in self.ledger.events(self.incident.incident_id):
                if event.kind == COUNTED_KIND:
                    self.regions = dict(event.detail["regions"])
                    self.locales = dict(event.detail.get("locales") or {})
        if self.regions is None:
            locales = Counter[str]()

            def regions() -> Iterator[str | None]:
                for person in self.audience:
                    locales[person.locale or ""] += 1
                    yield person.region

            total, self.regions = count_regions(regions())
            self.locales = dict(sorted(locales.items()))
            if self.audience_total is None:
                self.audience_total = total
            self.emit(COUNTED_KIND, total=total, regions=self.regions, locales=self.locales)
        return self.regions

    def counts(self) -> dict[str, Any]:
        """What conditions may read: audience size and people per region, people reached so
        far, skipped rows."""
        regions = self.count_audience()
        if self.audience_total is None:
            self.audience_total = sum(1 for _ in self.audience)
        total = self.audience_total
        reached = self.ledger.reached(self.incident.incident_id)
        per_step = self.ledger.delivery_counts(self.incident.incident_id)
        skipped = sum(c.get(DeliveryState.SKIPPED.value, 0) for c in per_step.values())
        return {"total": total, "reached": reached, "unreachable": total - reached,
                "skipped": skipped, "regions": RegionCounts(regions)}  # fmt: skip

    def run_step(
        self,
        step: Step,
        due: datetime,
        *,
        approved_by: str | None = None,
        resume_after: int = 0,
        evaluated: bool | None = None,
    ) -> StepOutcome:
        """Fire ``step``: condition, approval gate, fan-out.

        ``evaluated`` carries a condition result recorded before a restart (a fan-out that was
        interrupted resumes without re-deciding on later counts).
        """
        incident_id = self.incident.incident_id
        dry_run = self.incident.mode == "dry-run"
        outcome = StepOutcome(step, due, fired=True, condition_result=evaluated)
        if step.condition and evaluated is None:
            scope = {"facts": self.incident.facts, "counts": self.counts(),
                     "severity": self.playbook.severity, "mode": self.incident.mode,
                     "jurisdictions": self.playbook.jurisdictions}  # fmt: skip
            outcome.condition_result = conditions.parse(step.condition)(scope)
            outcome.extra["counts"] = scope["counts"]
            if not outcome.condition_result:
                outcome.fired = False
                self.ledger.update_step(incident_id, step.id, state=StepState.NOT_FIRED.value,
                                        condition_result=False, finished_at=now())  # fmt: skip
                self.emit("step.not_fired", step.id, condition=step.condition,
                          counts=scope["counts"])  # fmt: skip
                return outcome
        if step.approval is not None:
            if dry_run:
                outcome.note = f"needs approval by {step.approval.label} (simulated in dry-run)"
                self.emit("step.approval_simulated", step.id, role=step.approval.label)
            elif approved_by is None:
                outcome.fired = False
                outcome.waiting_for_approval = True
                self.ledger.update_step(incident_id, step.id,
                                        state=StepState.AWAITING_APPROVAL.value,
                                        condition_result=outcome.condition_result)  # fmt: skip
                self.emit("step.awaiting_approval", step.id, role=step.approval.label,
                          roles=step.approval.required_roles,
                          quorum=step.approval.needed)  # fmt: skip
                return outcome
        self.ledger.update_step(
            incident_id,
            step.id,
            state=StepState.RUNNING.value,
            condition_result=outcome.condition_result,
            started_at=now(),
        )
        if resume_after:
            self.emit("step.resumed", step.id, after_row=resume_after)
        else:
            self.emit("step.fired", step.id, channel=step.channel)
        number = update_number(step.id)
        only = self.follow_ups.audience(step.id) if number is not None else None
        outcome.tally = self.fanout_for(step.id).run(
            step, self.audience, resume_after=resume_after, only=only
        )
        contact = self.host.notifier(step.channel, step.notifier).contact
        if contact is not None and number is None:
            # Always written: another step's condition may have counted the audience in
            # memory already, and the ledger is what `breach status` reads.
            people = max(outcome.tally.people, resume_after)
            self.audience_total = people
            self.ledger.update_incident(incident_id, audience_total=people)
        detail = outcome.tally.as_dict()
        if dry_run:
            self.ledger.update_step(incident_id, step.id, state=StepState.DONE.value,
                                    finished_at=now(), detail=detail)  # fmt: skip
            self.emit("step.done", step.id, states=dict(outcome.tally.states))
        else:
            # Done once every delivery settled; the engine's housekeeping marks it.
            self.ledger.update_step(incident_id, step.id, detail=detail)
        return outcome

    def run_fallback(self, step: Step, recipient_ids: set[str]) -> StepTally:
        """Send ``step``'s fallback to these people (their first delivery failed or was never
        confirmed). Their fallback rows carry the step id with ``+fallback``."""
        assert step.fallback is not None
        pseudo = step.model_copy(update={
            "id": step.id + FALLBACK_SUFFIX, "channel": step.fallback.channel,
            "notifier": step.fallback.notifier,
            "fallback": None, "recipients": None, "condition": None, "approval": None,
        })  # fmt: skip
        self.emit("step.fallback", step.id, channel=step.fallback.channel,
                  people=len(recipient_ids))  # fmt: skip
        return self.fanout_for(step.id).run(pseudo, self.audience, only=recipient_ids)

    def fanout_for(self, step_id: str) -> FanOut:
        """The fan-out of a ledger step: a follow-up's (``STEP@N``, its fallback too) renders
        its update's follow-up notice; every other step's renders the first notice."""
        number = update_number(step_id)
        return self.fanout if number is None else self.follow_ups.fanout(number)

    # -- rebuilding a message from its ledger row (dispatch) ------------------------------------

    def message_for(self, row: Mapping[str, Any]) -> Message:
        """The exact message of a delivery row, rendered again from what the row kept."""
        locale = row["locale"] or self.playbook.default_locale
        if row["recipient_id"].startswith(("regulator:", "public")):
            notices = {loc: self.renderer.render_public(loc, self._shared())
                       for loc in self.playbook.notice}  # fmt: skip
            step = self.playbook.step(row["step_id"])
            return Message(
                delivery_id=row["key"], step_id=row["step_id"], channel=row["channel"],
                incident=self.incident, notice=notices[self.playbook.default_locale],
                notices=notices, regulator=step.regulator if step else None,
            )  # fmt: skip
        data = row.get("recipient_data") or {}
        person = Recipient(
            id=row["recipient_id"], row=row["recipient_row"], name=data.get("name"),
            locale=data.get("locale") or locale, region=data.get("region"),
            attrs=dict(data.get("attrs") or {}),
        )  # fmt: skip
        contact, fanout = self._plans.get((row["step_id"], row["notifier"])) or self._plan(
            row["step_id"], row["notifier"])  # fmt: skip
        if contact is not None:
            setattr(person, contact, row["contact"])
        context = fanout.shared_context
        if data:
            context = {**context, "recipient": {**data, "id": person.id}}
        notice = fanout.renderer.render(locale, context)  # a shared notice is rendered once
        return Message(
            delivery_id=row["key"], step_id=row["step_id"], channel=row["channel"],
            incident=self.incident, notice=notice, recipient=person, address=row["contact"],
        )  # fmt: skip

    def _plan(self, step_id: str, notifier: str) -> _Plan:
        """What every row of (step, notifier) shares when rebuilt: the notifier's contact field
        and the step's fan-out (whose renderer keeps the notice of a locale that reads no
        person)."""
        plan = (self.host.notifier_classes[notifier][1].contact, self.fanout_for(step_id))
        self._plans[(step_id, notifier)] = plan
        return plan

    def _shared(self) -> dict[str, Any]:
        return self.fanout.shared_context

    def public_notices(self) -> dict[str, RenderedNotice]:
        """The notice in every locale as the public and regulators read it (no person)."""
        return {
            loc: self.renderer.render_public(loc, self._shared()) for loc in self.playbook.notice
        }


def read_redirect_file(path: Path) -> dict[str, list[str]]:
    """Test recipients for staging, one per line: phone numbers, e-mails, push tokens."""
    table: dict[str, list[str]] = {"phone": [], "email": [], "push_token": []}
    for line in read_document(path, "test recipients file").splitlines():
        value = line.split("#", 1)[0].strip()
        if not value:
            continue
        kind = "email" if "@" in value else "phone" if value.startswith("+") else "push_token"
        table[kind].append(value)
    return table


def _redirect_table(stored: Mapping[str, Any] | None) -> dict[str, list[str]] | None:
    if not stored:
        return None
    return {k: list(v) for k, v in stored.items()}
