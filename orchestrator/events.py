"""Timeline events of an incident, delivered to ``incident_event`` observers and the audit trail."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class IncidentEvent:
    """Something that happened to an incident: ``kind`` is a dotted verb (``step.fired``)."""

    incident_id: str
    kind: str
    step_id: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    actor: str = "orchestrator"
    at: datetime = field(default_factory=lambda: datetime.now(UTC))
