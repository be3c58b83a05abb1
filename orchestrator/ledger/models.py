"""The ledger's tables (SQLAlchemy 2 typed ORM). Schema changes go through Alembic migrations."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from ..limits import MAX_ACTOR_CHARS, MAX_CONTACT_CHARS, MAX_PROVIDER_ID, MAX_RECIPIENT_ID


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite would otherwise hand back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("the ledger stores aware datetimes only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, datetime: UTCDateTime}


class DeliveryState(enum.StrEnum):
    """Where one delivery stands. Terminal: sent, delivered, failed, skipped, dead."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"
    SKIPPED = "skipped"
    DEAD = "dead"


class StepState(enum.StrEnum):
    """Where one step of an incident stands."""

    SCHEDULED = "scheduled"
    #: due before a deadline whose clock waits for an event (``breach event``) not yet recorded
    WAITING = "waiting"
    AWAITING_APPROVAL = "awaiting_approval"
    RUNNING = "running"
    DONE = "done"
    NOT_FIRED = "not_fired"  # its condition was false when it came due
    MISSED = "missed"  # came due while nothing ran and its misfire policy is "skip"
    CANCELLED = "cancelled"
    BLOCKED = "blocked"  # a notifier lacks settings for the mode: stopped, not retried


class Incident(Base):
    __tablename__ = "incidents"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    playbook_id: Mapped[str] = mapped_column(String(64))
    playbook_version: Mapped[str] = mapped_column(String(32))
    #: the playbook as it was when triggered, so a run can be replayed after the file changes
    playbook_text: Mapped[str] = mapped_column(Text)
    playbook_digest: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(300))
    severity: Mapped[str] = mapped_column(String(16))
    mode: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default="open")
    aware_at: Mapped[datetime]
    created_at: Mapped[datetime]
    facts: Mapped[dict[str, Any]]
    facts_version: Mapped[int] = mapped_column(Integer, default=1)
    audience_spec: Mapped[str] = mapped_column(Text)
    audience_options: Mapped[dict[str, Any]]
    audience_total: Mapped[int | None] = mapped_column(BigInteger, default=None)
    #: staging: every address replaced by one of these test recipients (see --redirect-to)
    redirect_to: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    outbox: Mapped[str | None] = mapped_column(Text, default=None)
    source: Mapped[str] = mapped_column(String(32), default="cli")
    dedupe_key: Mapped[str | None] = mapped_column(String(200), default=None, index=True)


class Step(Base):
    __tablename__ = "steps"
    __table_args__ = (UniqueConstraint("incident_id", "step_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    step_id: Mapped[str] = mapped_column(String(64))
    position: Mapped[int] = mapped_column(Integer)
    channel: Mapped[str] = mapped_column(String(32))
    due_at: Mapped[datetime | None]
    state: Mapped[str] = mapped_column(String(24), default=StepState.SCHEDULED.value)
    condition_result: Mapped[bool | None] = mapped_column(default=None)
    approved_by: Mapped[str | None] = mapped_column(String(MAX_ACTOR_CHARS), default=None)
    approved_at: Mapped[datetime | None] = mapped_column(default=None)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: audience rows already recorded by the fan-out, so a crashed fan-out resumes where it was
    fanout_rows: Mapped[int] = mapped_column(BigInteger, default=0)
    fanout_done: Mapped[bool] = mapped_column(default=False)
    #: the worker that holds the fan-out (see ``orchestrator.ledger.leases``); None: nobody yet
    fanout_owner: Mapped[str | None] = mapped_column(String(96), default=None)


def _partial(column: str) -> dict[str, Any]:
    """An index's options to hold only the rows where ``column`` is set."""
    return _where(f"{column} IS NOT NULL")


def _where(predicate: str) -> dict[str, Any]:
    """An index's options to hold only the rows where ``predicate`` holds."""
    where = text(predicate)
    return {"sqlite_where": where, "postgresql_where": where}


class Delivery(Base):
    """One (incident, step, recipient): the unit of idempotency, retry, receipt and audit.

    It keeps what reproduces the message (contact snapshot, locale, content hash, the incident's
    playbook text and facts version) rather than the rendered body.
    """

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("incident_id", "step_id", "recipient_id", name="uq_delivery"),
        # ends with id: a claim's order, which PostgreSQL then reads without sorting (0008)
        Index("ix_delivery_dispatch", "notifier", "state", "next_attempt_at", "id"),
        Index("ix_delivery_step_state", "incident_id", "step_id", "state"),
        # Partial: a fan-out writes its rows without either value, and an index entry per NULL
        # would cost every row of it a B-tree insert that no query ever reads.
        Index("ix_delivery_provider_id", "provider_message_id", **_partial("provider_message_id")),
        # an incident's status: its reasons, and its possible duplicates (0009)
        Index(
            "ix_delivery_reasons",
            "incident_id",
            "step_id",
            "reason",
            **_where("reason IS NOT NULL"),
        ),
        Index("ix_delivery_reclaimed", "incident_id", "reclaims", **_where("reclaims > 0")),
        # one message per address per step: the key names its step (orchestrator/sharing.py)
        Index("uq_delivery_address", "address_key", unique=True, **_partial("address_key")),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    key: Mapped[str] = mapped_column(String(200), unique=True)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    step_id: Mapped[str] = mapped_column(String(64))
    recipient_id: Mapped[str] = mapped_column(String(MAX_RECIPIENT_ID))
    recipient_row: Mapped[int] = mapped_column(BigInteger, default=0)
    channel: Mapped[str] = mapped_column(String(32))
    #: the notifier that sends it (several may serve one channel)
    notifier: Mapped[str | None] = mapped_column(String(64), default=None)
    via_fallback: Mapped[bool] = mapped_column(default=False)
    locale: Mapped[str | None] = mapped_column(String(16), default=None)
    contact: Mapped[str | None] = mapped_column(String(MAX_CONTACT_CHARS), default=None)
    #: name/region/attrs, kept only when the notice templates read the recipient
    recipient_data: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    state: Mapped[str] = mapped_column(String(16), default=DeliveryState.PENDING.value)
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    #: what the provider's receipt said (a ``ReceiptOutcome``: delivered, bounce, undelivered,
    #: failed); None until a receipt arrives. Receipt-driven fallbacks select on it.
    receipt_outcome: Mapped[str | None] = mapped_column(String(16), default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=None)
    lease_until: Mapped[datetime | None] = mapped_column(default=None)
    #: times a lease expired while sending (a crash): each may have reached the provider twice
    reclaims: Mapped[int] = mapped_column(Integer, default=0)
    sent_at: Mapped[datetime | None] = mapped_column(default=None)
    provider_message_id: Mapped[str | None] = mapped_column(String(MAX_PROVIDER_ID), default=None)
    content_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    #: hash of the step and the address this row sends to, when its step sends one message per
    #: address (see ``orchestrator.sharing``); None for rows that send nothing or steps that do not
    address_key: Mapped[bytes | None] = mapped_column(LargeBinary(16), default=None)
    #: for a person skipped because another has the same address: that person's recipient id
    #: (the holder); the sharer follows the holder into the step's fallback
    shares_with: Mapped[str | None] = mapped_column(String(MAX_RECIPIENT_ID), default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class AuditEvent(Base):
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(64))
    step_id: Mapped[str | None] = mapped_column(String(64), default=None)
    actor: Mapped[str] = mapped_column(String(MAX_ACTOR_CHARS), default="orchestrator")
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: the hash chain (see ``ledger/chain.py``): the previous row's hash, and this row's
    prev_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    hash: Mapped[str | None] = mapped_column(String(64), default=None)


class Worker(Base):
    """One ``breach run`` or ``breach serve`` process sharing the ledger, alive while its
    heartbeat is fresh. A worker whose heartbeat went stale is taken for dead: the fan-outs it
    held are taken over (see :mod:`orchestrator.ledger.leases`)."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(96), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    #: ``run`` or ``serve``
    kind: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime]
    heartbeat_at: Mapped[datetime]
    #: the last heartbeat plus the worker's own timeout: dead once this has passed
    alive_until: Mapped[datetime] = mapped_column(index=True)
    #: set when the worker stopped cleanly (a killed one keeps None and goes stale)
    stopped_at: Mapped[datetime | None] = mapped_column(default=None)


class RateSlot(Base):
    """A notifier's shared pacing across workers: the moment (seconds since the epoch on the
    database's clock) from which its next messages may start. Each worker reserves a slot by
    pushing it forward (GCRA), so every worker together stays under the rate."""

    __tablename__ = "rate_slots"

    notifier: Mapped[str] = mapped_column(String(64), primary_key=True)
    next_start: Mapped[float] = mapped_column(Float, default=0.0)
