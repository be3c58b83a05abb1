"""A campaign: one incident's steps carried out in time order against its audience.

Dry-run compresses time: every step is evaluated at once in due order, conditions see the counts
the earlier steps produced, approval gates are noted (not waited for), and every message is
rendered into the outbox. Live delivery (scheduling, dispatch, retries) builds on the same fan-out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from . import conditions
from .audience import AudienceSource
from .events import IncidentEvent
from .fanout import FanOut, StepTally
from .ledger import DeliveryState, Ledger, StepState, now
from .message import IncidentContext
from .notice import NoticeRenderer
from .outbox import Outbox
from .playbook import Playbook, Step
from .pluginhost import PluginHost


@dataclass
class StepOutcome:
    step: Step
    due_at: datetime
    fired: bool
    condition_result: bool | None = None
    tally: StepTally | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class Campaign:
    """Runs the steps of one incident (dry-run for now: time compressed)."""

    def __init__(
        self,
        *,
        host: PluginHost,
        ledger: Ledger,
        playbook: Playbook,
        incident: IncidentContext,
        incident_vars: dict[str, Any],
        audience: AudienceSource,
        outbox: Outbox | None,
    ) -> None:
        self.host = host
        self.ledger = ledger
        self.playbook = playbook
        self.incident = incident
        self.audience = audience
        self.renderer = NoticeRenderer(playbook)
        self.fanout = FanOut(
            host=host,
            ledger=ledger,
            playbook=playbook,
            renderer=self.renderer,
            incident=incident,
            incident_vars=incident_vars,
            outbox=outbox,
        )
        self.audience_total: int | None = None

    def emit(self, kind: str, step_id: str | None = None, **detail: Any) -> None:
        event = IncidentEvent(self.incident.incident_id, kind, step_id, detail)
        self.ledger.record(event)
        self.host.emit(event)

    def counts(self) -> dict[str, Any]:
        """What conditions may read: audience size, people reached so far, per channel sent."""
        if self.audience_total is None:
            self.audience_total = sum(1 for _ in self.audience)
        total = self.audience_total
        reached = self.ledger.reached(self.incident.incident_id)
        per_step = self.ledger.delivery_counts(self.incident.incident_id)
        skipped = sum(c.get(DeliveryState.SKIPPED.value, 0) for c in per_step.values())
        return {"total": total, "reached": reached, "unreachable": total - reached,
                "skipped": skipped}  # fmt: skip

    def run_step(self, step: Step, due: datetime) -> StepOutcome:
        incident_id = self.incident.incident_id
        outcome = StepOutcome(step, due, fired=True)
        if step.condition:
            scope = {"facts": self.incident.facts, "counts": self.counts(),
                     "severity": self.playbook.severity, "mode": self.incident.mode,
                     "jurisdictions": self.playbook.jurisdictions}  # fmt: skip
            outcome.condition_result = conditions.parse(step.condition)(scope)
            outcome.extra["counts"] = scope["counts"]
            if not outcome.condition_result:
                outcome.fired = False
                self.ledger.update_step(
                    incident_id,
                    step.id,
                    state=StepState.NOT_FIRED.value,
                    condition_result=False,
                    finished_at=now(),
                )
                self.emit(
                    "step.not_fired", step.id, condition=step.condition, counts=scope["counts"]
                )
                return outcome
        if step.approval is not None:
            outcome.note = f"needs approval by {step.approval.role} (simulated in dry-run)"
            self.emit("step.approval_simulated", step.id, role=step.approval.role)
        self.ledger.update_step(
            incident_id,
            step.id,
            state=StepState.RUNNING.value,
            condition_result=outcome.condition_result,
            started_at=now(),
        )
        self.emit("step.fired", step.id, channel=step.channel)
        outcome.tally = self.fanout.run(step, self.audience)
        if self.host.notifier(step.channel, step.notifier).contact is not None:
            self.audience_total = outcome.tally.people
        self.ledger.update_step(
            incident_id,
            step.id,
            state=StepState.DONE.value,
            finished_at=now(),
            detail=outcome.tally.as_dict(),
        )
        self.emit("step.done", step.id, states=dict(outcome.tally.states))
        return outcome
