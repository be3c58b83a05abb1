"""The delivery ledger: incidents, steps, deliveries and the audit trail, in SQL.

SQLite by default (a file, WAL mode, zero set-up); PostgreSQL by URL when several workers share a
campaign. Opening a ledger brings its schema to the latest Alembic revision.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import resources
from typing import Any, cast

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, Table, create_engine, event, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from ..errors import LedgerError, NotFound
from ..events import IncidentEvent
from .models import AuditEvent, Delivery, DeliveryState, Incident, Step, StepState

__all__ = [
    "DUPLICATE_REASON",
    "AuditEvent",
    "Delivery",
    "DeliveryState",
    "Incident",
    "Ledger",
    "Step",
    "StepState",
    "default_url",
]

DEFAULT_URL = "sqlite:///breach.db"


DELIVERIES = cast(Table, Delivery.__table__)
DUPLICATE_REASON = "duplicate recipient id in the audience"
_DELIVERY_DEFAULTS: dict[str, Any] = {
    "via_fallback": False, "locale": None, "contact": None, "recipient_data": None,
    "reason": None, "attempts": 0, "next_attempt_at": None, "lease_until": None,
    "provider_message_id": None, "content_hash": None, "error": None, "recipient_row": 0,
}  # fmt: skip


def default_url() -> str:
    """``BREACH_DATABASE_URL``, else ``./breach.db``."""
    return os.environ.get("BREACH_DATABASE_URL") or DEFAULT_URL


def now() -> datetime:
    return datetime.now(UTC)


class Ledger:
    """A handle on one ledger database."""

    def __init__(self, url: str | None = None, *, migrate: bool = True) -> None:
        self.url = url or default_url()
        try:
            self.engine: Engine = create_engine(self.url, future=True)
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            raise LedgerError(f"cannot open ledger {_safe(self.url)}: {exc}") from None
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        if migrate:
            self.migrate()

    def migrate(self) -> None:
        """Upgrade the schema to the latest revision (idempotent)."""
        cfg = Config()
        cfg.set_main_option(
            "script_location", str(resources.files("orchestrator.ledger").joinpath("migrations"))
        )
        try:
            with self.engine.begin() as connection:
                cfg.attributes["connection"] = connection
                command.upgrade(cfg, "head")
        except OperationalError as exc:
            raise LedgerError(f"cannot open ledger {_safe(self.url)}: {exc.orig}") from None

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.sessions.begin() as session:
            yield session

    # -- incidents -----------------------------------------------------------------------------

    def add_incident(self, incident: Incident, steps: Iterable[Step]) -> None:
        with self.session() as s:
            s.add(incident)
            s.flush()
            s.add_all(list(steps))

    def incident(self, incident_id: str) -> Incident:
        with self.session() as s:
            found = s.get(Incident, incident_id)
            if found is None:
                raise NotFound(f"no incident {incident_id!r} in {_safe(self.url)}")
            return found

    def incidents(self, limit: int = 50) -> list[Incident]:
        with self.session() as s:
            return list(
                s.scalars(select(Incident).order_by(Incident.created_at.desc()).limit(limit))
            )

    def open_incident(self, dedupe_key: str) -> str | None:
        """Newest incident with this dedupe key that is not cancelled or closed."""
        with self.session() as s:
            return s.scalar(
                select(Incident.id)
                .where(Incident.dedupe_key == dedupe_key,
                       Incident.state.not_in(("cancelled", "closed")))
                .order_by(Incident.created_at.desc())
                .limit(1)
            )  # fmt: skip

    def update_incident(self, incident_id: str, **values: Any) -> None:
        with self.session() as s:
            s.execute(update(Incident).where(Incident.id == incident_id).values(**values))

    # -- steps ---------------------------------------------------------------------------------

    def steps(self, incident_id: str) -> list[Step]:
        with self.session() as s:
            return list(
                s.scalars(
                    select(Step).where(Step.incident_id == incident_id).order_by(Step.position)
                )
            )

    def step(self, incident_id: str, step_id: str) -> Step:
        with self.session() as s:
            found = s.scalar(
                select(Step).where(Step.incident_id == incident_id, Step.step_id == step_id)
            )
            if found is None:
                raise NotFound(f"incident {incident_id!r} has no step {step_id!r}")
            return found

    def update_step(self, incident_id: str, step_id: str, **values: Any) -> None:
        with self.session() as s:
            s.execute(
                update(Step)
                .where(Step.incident_id == incident_id, Step.step_id == step_id)
                .values(**values)
            )

    # -- deliveries ----------------------------------------------------------------------------

    def insert_deliveries(self, rows: list[Mapping[str, Any]]) -> list[int]:
        """Insert one batch of delivery rows (dicts of Delivery columns) in one transaction.

        Returns the positions of rows whose (incident, step, recipient) already existed — a
        duplicate id in the audience. Those are recorded as ``skipped`` rows of their own (the
        recipient id suffixed with the source row) so that nothing is lost or silently merged.
        """
        full = [{**_DELIVERY_DEFAULTS, **row} for row in rows]
        try:
            # Core insert (not ORM bulk): one executemany, several times faster.
            with self.engine.begin() as connection:
                connection.execute(insert(DELIVERIES), full)
            return []
        except IntegrityError:
            pass  # somewhere in the batch is a duplicate: go row by row to find it
        duplicates: list[int] = []
        with self.engine.begin() as connection:
            for position, row in enumerate(full):
                if connection.execute(self._insert_new(row)).rowcount == 1:
                    continue
                duplicates.append(position)
                tag = f"#row{row['recipient_row']}"
                connection.execute(self._insert_new({
                    **row, "key": row["key"][: 200 - len(tag)] + tag,
                    "recipient_id": row["recipient_id"][: 200 - len(tag)] + tag,
                    "state": DeliveryState.SKIPPED.value, "reason": DUPLICATE_REASON,
                    "contact": None, "content_hash": None, "next_attempt_at": None,
                }))  # fmt: skip
        return duplicates

    def _insert_new(self, row: Mapping[str, Any]) -> Any:
        """INSERT ... ON CONFLICT DO NOTHING for this ledger's dialect."""
        name = self.engine.dialect.name
        if name == "sqlite":
            return sqlite_insert(DELIVERIES).values(**row).on_conflict_do_nothing()
        if name == "postgresql":
            return postgresql_insert(DELIVERIES).values(**row).on_conflict_do_nothing()
        raise LedgerError(f"unsupported ledger database: {name} (use SQLite or PostgreSQL)")

    def delivery_counts(self, incident_id: str) -> dict[str, dict[str, int]]:
        """step id -> state -> count."""
        out: dict[str, dict[str, int]] = {}
        with self.session() as s:
            rows = s.execute(
                select(Delivery.step_id, Delivery.state, func.count())
                .where(Delivery.incident_id == incident_id)
                .group_by(Delivery.step_id, Delivery.state)
            )
            for step_id, state, n in rows:
                out.setdefault(step_id, {})[state] = n
        return out

    def reasons(self, incident_id: str, step_id: str | None = None) -> dict[str, dict[str, int]]:
        """step id -> skip/failure reason -> count."""
        out: dict[str, dict[str, int]] = {}
        query = (
            select(Delivery.step_id, Delivery.reason, func.count())
            .where(Delivery.incident_id == incident_id, Delivery.reason.is_not(None))
            .group_by(Delivery.step_id, Delivery.reason)
        )
        if step_id is not None:
            query = query.where(Delivery.step_id == step_id)
        with self.session() as s:
            for sid, reason, n in s.execute(query):
                out.setdefault(sid, {})[str(reason)] = n
        return out

    def reached(self, incident_id: str) -> int:
        """How many distinct people have at least one sent or delivered message."""
        done = (DeliveryState.SENT.value, DeliveryState.DELIVERED.value)
        with self.session() as s:
            return int(
                s.scalar(
                    select(func.count(func.distinct(Delivery.recipient_id))).where(
                        Delivery.incident_id == incident_id,
                        Delivery.state.in_(done),
                        Delivery.contact.is_not(None),
                    )
                )
                or 0
            )

    # -- audit ---------------------------------------------------------------------------------

    def record(self, event: IncidentEvent) -> None:
        with self.session() as s:
            s.add(
                AuditEvent(
                    incident_id=event.incident_id,
                    at=event.at,
                    kind=event.kind,
                    step_id=event.step_id,
                    actor=event.actor,
                    detail=event.detail,
                )
            )

    def events(self, incident_id: str) -> list[AuditEvent]:
        with self.session() as s:
            return list(
                s.scalars(
                    select(AuditEvent)
                    .where(AuditEvent.incident_id == incident_id)
                    .order_by(AuditEvent.id)
                )
            )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets `breach status` read while a campaign writes; NORMAL sync is durable in WAL mode
    # against process crashes (the crash-safety promise), trading only power-loss durability.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _safe(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<ledger URL>"
