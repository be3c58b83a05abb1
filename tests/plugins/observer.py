"""Fixture plugin: records every incident event, and fails on one kind to prove isolation."""

from __future__ import annotations

from orchestrator.plugin import IncidentEvent, hookimpl

seen: list[IncidentEvent] = []


@hookimpl
def incident_event(event: IncidentEvent) -> None:
    seen.append(event)
    if event.kind == "step.not_fired":
        raise RuntimeError("observer bug: must not stop the campaign")
