"""The dry-run report: what each step did, per-channel volumes and ETAs, deadlines.

Printed by ``breach trigger --dry-run`` and written to the outbox as ``summary.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .applicability import Applicability
from .campaign import StepOutcome
from .durations import format_duration
from .message import IncidentContext
from .outbox import Outbox
from .playbook import Playbook
from .pluginhost import PluginHost
from .regimes import Regime
from .sharing import SAME_ADDRESS


def dry_run_summary(
    playbook: Playbook,
    context: IncidentContext,
    outcomes: Sequence[StepOutcome],
    total: int,
    host: PluginHost,
    regimes: dict[str, Regime],
    audience: str,
    outbox: Outbox,
    applying: Sequence[Applicability] = (),
    warnings: Sequence[str] = (),
) -> dict[str, Any]:
    """The dry-run report: what each step did, per-channel volumes and ETAs, deadlines, which
    regimes apply (``applying``) and why, and ``warnings`` for the commander."""
    channels: dict[str, dict[str, Any]] = {}
    steps = []
    for outcome in outcomes:
        step = outcome.step
        entry: dict[str, Any] = {
            "step": step.id, "channel": step.channel, "due_at": outcome.due_at.isoformat(),
            "offset": format_duration(outcome.due_at - context.aware_at), "fired": outcome.fired,
            "condition": step.condition, "condition_result": outcome.condition_result,
            "approval": step.approval.label if step.approval else None, "note": outcome.note,
        }  # fmt: skip
        if "counts" in outcome.extra:
            entry["counts_seen"] = outcome.extra["counts"]
        if outcome.tally is not None:
            entry.update(outcome.tally.as_dict())
            # people skipped because another person of the step has their address
            entry["same_address"] = outcome.tally.reasons.get(SAME_ADDRESS, 0)
            named = {step.channel: step.notifier}
            if step.fallback is not None:
                named.setdefault(step.fallback.channel, step.fallback.notifier)
            for channel, n in outcome.tally.channels.items():
                rate = host.notifier(channel, named.get(channel)).default_rate
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
        "regimes": [a.as_dict() for a in applying],
        "warnings": list(warnings),
        "previews": sorted(outbox.previews.values()),
        "outbox": str(outbox.folder),
    }
