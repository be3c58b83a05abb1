"""Why an incident stands where it does: the explanations ``breach status`` adds to its counts.

The ledger holds the counts; the audit trail holds the reasons. This module reads both for one
incident and says, per step, why it did not fire, what stopped it, which roles an approval still
waits for; per notifier, what its circuit breaker last reported and when it probes again; per
regulator, whether the report was filed before its deadline. Cancelled deliveries are counted
apart from skipped ones, and a dry run's deliveries read "rendered", since nothing was sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from .ledger import AuditEvent, Step, StepState
from .playbook import Playbook

__all__ = ["APPROVAL_EVENTS", "approvals", "circuits", "explain_step", "filed", "split_counts"]

#: audit event kinds that say something about an approval gate
APPROVAL_EVENTS = ("step.approved", "step.rejected", "step.approval_refused")
#: the reason :meth:`Ledger.cancel` gives the deliveries it skips starts with this
CANCELLED_PREFIX = "cancelled by "


def split_counts(
    counts: Mapping[str, int], reasons: Mapping[str, int], *, dry_run: bool
) -> dict[str, int]:
    """Delivery state -> count, with ``cancelled`` apart from ``skipped`` and, for a dry run,
    ``rendered`` instead of ``sent``."""
    out = dict(counts)
    cancelled = sum(n for reason, n in reasons.items() if reason.startswith(CANCELLED_PREFIX))
    if cancelled and out.get("skipped"):
        out["cancelled"] = min(cancelled, out["skipped"])
        out["skipped"] -= out["cancelled"]
        if not out["skipped"]:
            del out["skipped"]
    if dry_run and "sent" in out:
        out["rendered"] = out.pop("sent")
    return out


def approvals(events: Iterable[AuditEvent], step_id: str) -> list[dict[str, Any]]:
    """The approvals recorded for a step, oldest first: who, in which role, when."""
    return [
        {"by": e.actor, "role": e.detail.get("role"), "at": e.at.isoformat()}
        for e in events
        if e.step_id == step_id and e.kind == "step.approved"
    ]


def _last(events: Sequence[AuditEvent], step_id: str, kinds: tuple[str, ...]) -> AuditEvent | None:
    found = [e for e in events if e.step_id == step_id and e.kind in kinds]
    return found[-1] if found else None


def explain_step(
    step: Step, playbook: Playbook | None, events: Sequence[AuditEvent]
) -> tuple[str | None, dict[str, Any] | None]:
    """``(why, waiting_for)``: why the step stands where it does (None when there is nothing to
    explain) and, for a gate still closed, the roles it waits for and the approvals so far."""
    spec = playbook.step(step.step_id) if playbook is not None else None
    gate = spec.approval if spec is not None else None
    waiting: dict[str, Any] | None = None
    if gate is not None and not step.approved_by and step.state in (
        StepState.SCHEDULED.value, StepState.AWAITING_APPROVAL.value,
    ):  # fmt: skip
        given = approvals(events, step.step_id)
        have = sorted({a["role"] for a in given if a["role"]})
        missing = [r for r in gate.required_roles if r not in have]
        waiting = {"roles": gate.required_roles, "quorum": gate.needed, "approved": given,
                   "missing": missing, "cli": gate.cli}  # fmt: skip
    state = step.state
    if state == StepState.NOT_FIRED.value:
        event = _last(events, step.step_id, ("step.not_fired",))
        condition = event.detail.get("condition") if event else (spec.condition if spec else None)
        why = f"its condition `{condition}` was false when it came due"
        if event and event.detail.get("counts"):
            counts = event.detail["counts"]
            why += " (" + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + ")"
        return why, None
    if state == StepState.MISSED.value:
        event = _last(events, step.step_id, ("step.missed",))
        late = int(event.detail.get("late_seconds", 0)) if event else 0
        return (f"came due {late // 60} min late while nothing ran, and its misfire policy is "
                "skip"), None  # fmt: skip
    if state == StepState.BLOCKED.value:
        event = _last(events, step.step_id, ("step.blocked",))
        error = str(event.detail.get("error")) if event else str(step.detail.get("blocked"))
        return f"stopped, not retried: {error}", None
    if state == StepState.CANCELLED.value:
        event = _last(events, step.step_id, ("step.rejected",))
        if event is not None:
            reason = event.detail.get("reason")
            role = event.detail.get("role")
            who = f"{event.actor} ({role})" if role else event.actor
            return f"rejected by {who}" + (f": {reason}" if reason else ""), None
        return "the incident was cancelled before it fired", None
    if waiting is not None and gate is not None:
        got = len({a["role"] for a in waiting["approved"]})
        why = f"waits for approval by {gate.label}"
        if got:
            people = ", ".join(f"{a['by']} ({a['role']})" for a in waiting["approved"])
            why += f": {got} of {gate.needed} given ({people})"
        return why, waiting
    if state == StepState.RUNNING.value:
        event = _last(events, step.step_id, ("step.failed", "step.fired", "step.resumed"))
        if event is not None and event.kind == "step.failed":
            return f"its fan-out failed and is tried again: {event.detail.get('error')}", None
    return None, waiting


def circuits(events: Iterable[AuditEvent], current: datetime) -> dict[str, dict[str, Any]]:
    """Notifier -> what its circuit breaker last reported on this incident's timeline.

    An open breaker whose next probe time has passed reads ``half_open`` (probing).
    """
    out: dict[str, dict[str, Any]] = {}
    for e in events:
        if e.kind not in ("circuit.opened", "circuit.closed"):
            continue
        name = str(e.detail.get("notifier"))
        entry: dict[str, Any] = {"state": e.detail.get("state", "closed"),
                                 "since": e.at.isoformat(), "trips": e.detail.get("trips"),
                                 "next_probe_at": None}  # fmt: skip
        probe = e.detail.get("next_probe_at")
        if e.kind == "circuit.opened" and probe:
            entry["next_probe_at"] = probe
            if datetime.fromisoformat(probe) <= current:
                entry["state"] = "half_open"
        out[name] = entry
    return out


def filed(
    playbook: Playbook, steps: Iterable[Step], counts: Mapping[str, Mapping[str, int]]
) -> dict[str, str]:
    """Regulator id -> when its report was filed (its regulator step done and sent), ISO."""
    out: dict[str, str] = {}
    for step in steps:
        spec = playbook.step(step.step_id)
        if spec is None or spec.regulator is None or step.state != StepState.DONE.value:
            continue
        states = counts.get(step.step_id, {})
        if states.get("sent", 0) + states.get("delivered", 0) <= 0:
            continue
        at = step.finished_at or step.started_at
        if at is not None and spec.regulator not in out:
            out[spec.regulator] = at.isoformat()
    return out
