"""What a notifier is handed: one rendered message for one delivery."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from .audience import Recipient


@dataclass(frozen=True, slots=True)
class RenderedNotice:
    """The notice in one locale, every template already rendered to plain text."""

    locale: str
    subject: str
    impact: str
    measures: str
    advice: str
    contact: str
    what_happened: str | None
    data_involved: str | None
    sms: str
    push: str
    call: str
    #: salutation for one person ("Dear Ana,"); None on public and regulator messages
    greeting: str | None = None
    #: what the organisation offers the person (credit monitoring, a replacement card, ...)
    remedies: str | None = None
    #: the notice as regulators read it (third person; ``RegulatorNotice`` fields rendered, plus
    #: ``breach_type``); only on public and regulator messages, None when the playbook has none
    regulator: Mapping[str, Any] | None = None

    def sections(self) -> list[tuple[str, str]]:
        """(key, text) of the long-form sections present, in reading order."""
        keys = ("what_happened", "data_involved", "impact", "measures", "advice", "remedies",
                "contact")  # fmt: skip
        return [(k, v) for k in keys if (v := getattr(self, k))]


@dataclass(frozen=True, slots=True)
class IncidentContext:
    """Facts about the incident that every message of it shares."""

    incident_id: str
    playbook_id: str
    playbook_version: str
    title: str
    severity: str
    aware_at: datetime
    facts: Mapping[str, Any]
    organisation: Mapping[str, Any]
    mode: Literal["live", "sandbox", "dry-run"] = "dry-run"
    regulators: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    deadlines: Mapping[str, datetime | None] = field(default_factory=dict)
    #: what the ledger holds about the incident, read when a report asks (``notified``,
    #: ``counts``, ``filings``: see ``orchestrator.reporting.LedgerRecords``); empty outside a
    #: campaign
    records: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Message:
    """One delivery's content, ready for a notifier.

    ``address`` is the recipient's contact on the notifier's channel (E.164 phone, e-mail, push
    token); incident-scope notifiers (announcement, regulator) get ``recipient=None`` and the notice
    in every locale in ``notices``.
    """

    delivery_id: str
    step_id: str
    channel: str
    incident: IncidentContext
    notice: RenderedNotice
    recipient: Recipient | None = None
    address: str | None = None
    notices: Mapping[str, RenderedNotice] = field(default_factory=dict)
    regulator: str | None = None
    status_callback: str | None = None
