"""The delivery ledger: incidents, steps, deliveries and the audit trail, in SQL.

SQLite by default (a file, WAL mode, zero set-up); PostgreSQL by URL when several workers share a
campaign. Opening a ledger brings its schema to the latest Alembic revision.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import functools
import logging
import operator
import os
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    Connection,
    Engine,
    Select,
    Table,
    bindparam,
    case,
    create_engine,
    event,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DataError, IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.elements import ColumnElement

from ..errors import LedgerError, LedgerUnavailable, NotFound, StateConflict
from ..events import IncidentEvent
from ..limits import MAX_ERROR_CHARS, provider_id_kept, shortened, text_kept
from ..receipts import ReceiptOutcome, ReceiptUpdate
from ..sharing import SAME_ADDRESS, SAME_ADDRESS_PREFIX
from . import bulk, chain, settlements
from .leases import LeaseQueries
from .models import AuditEvent, Delivery, DeliveryState, Incident, Step, StepState

__all__ = [
    "DUPLICATE_REASON",
    "FALLBACK_SUFFIX",
    "AuditEvent",
    "Delivery",
    "DeliveryState",
    "Incident",
    "Ledger",
    "Step",
    "StepState",
    "default_url",
    "ledger_exists",
]

log = logging.getLogger(__name__)

DEFAULT_URL = "sqlite:///breach.db"


DELIVERIES = cast(Table, Delivery.__table__)
AUDIT = cast(Table, AuditEvent.__table__)
#: the step id of a step's fallback deliveries after a failure ("email-all+fallback")
FALLBACK_SUFFIX = "+fallback"
#: fallback triggers that select on the outcome a provider's receipt reported
OUTCOME_TRIGGERS: dict[str, ReceiptOutcome] = {
    "bounce": ReceiptOutcome.BOUNCE,
    "undelivered": ReceiptOutcome.UNDELIVERED,
}
DUPLICATE_REASON = "duplicate recipient id in the audience"
_DELIVERY_DEFAULTS: dict[str, Any] = {
    "via_fallback": False, "locale": None, "contact": None, "recipient_data": None,
    "reason": None, "attempts": 0, "next_attempt_at": None, "lease_until": None,
    "provider_message_id": None, "content_hash": None, "error": None, "recipient_row": 0,
    "notifier": None, "reclaims": 0, "sent_at": None, "receipt_outcome": None,
    "address_key": None, "shares_with": None,
}  # fmt: skip
ACTIVE = (DeliveryState.PENDING.value, DeliveryState.SENDING.value)
#: what the evidence of a settle or receipt batch reads of each delivery it changed
_SETTLED_COLUMNS = tuple(DELIVERIES.c[name] for name in (
    "id", "incident_id", "step_id", "key", "state", "provider_message_id",
))  # fmt: skip
#: the values of a settlement apart from its key (``Ledger.settle``'s parameter names)
_SETTLED_VALUES = ("state", "pid", "error", "reason", "nxt", "sent", "maybe")
_settled_values = operator.itemgetter(*_SETTLED_VALUES)
#: the columns a claim returns: what rebuilding and settling a message reads, no more (the
#: timestamps and settled fields would only be converted and dropped, row after row)
CLAIMED = tuple(DELIVERIES.c[name] for name in (
    "id", "key", "incident_id", "step_id", "recipient_id", "recipient_row", "channel",
    "notifier", "locale", "contact", "recipient_data", "attempts", "reclaims", "lease_until",
))  # fmt: skip
#: INSERT with ON CONFLICT, per dialect
_DIALECT_INSERTS: dict[str, Any] = {"sqlite": sqlite_insert, "postgresql": postgresql_insert}
_T = TypeVar("_T")
#: values per IN (...) list: far below SQLite's limit on bound parameters
_IN_CHUNK = 900
#: threads of :meth:`Ledger.in_thread`: claims, settlements and the heartbeat of a few notifiers
#: at once, within the connection pool's 15 (fan-outs have threads of their own)
LEDGER_THREADS = 8
#: threads of :meth:`Ledger.in_long_thread`: fan-outs that may run at the same time
LONG_THREADS = 32
#: On PostgreSQL a fan-out's rows are analyzed once it has copied this many, then each time that
#: count doubles (see ``Ledger._analyze_after``)
ANALYZE_AFTER_ROWS = 10_000


def default_url() -> str:
    """``BREACH_DATABASE_URL``, else ``./breach.db``."""
    return os.environ.get("BREACH_DATABASE_URL") or DEFAULT_URL


def ledger_exists(url: str | None = None) -> bool:
    """Whether the ledger at ``url`` exists already (any server database is taken to exist;
    a SQLite file must be there). Opening a ledger creates it; this only looks."""
    parsed = make_url(url or default_url())
    if not parsed.drivername.startswith("sqlite"):
        return True
    database = parsed.database
    return bool(database) and database != ":memory:" and Path(str(database)).exists()


def now() -> datetime:
    return datetime.now(UTC)


class Ledger(LeaseQueries):
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
        # SQLite has one writer at a time, and a connection that finds the database locked
        # polls for it, sleeping up to 100 ms between tries: the engine's threads (fan-out,
        # claims, settlements) would spend most of a campaign asleep. They take turns here,
        # handed over at once; other processes still meet SQLite's own busy timeout.
        self._turn = threading.RLock() if self.engine.dialect.name == "sqlite" else None
        #: called in this process with what a committed transaction announced ("deliveries",
        #: "incident", "step"): an engine wakes its idle loops without waiting for a poll
        self.listeners: list[Callable[[str], object]] = []
        self._local = threading.local()
        self._pools: dict[str, ThreadPoolExecutor] = {}
        self._pools_lock = threading.Lock()
        #: (incident, step) -> rows its fan-out copied, and the count that next asks an ANALYZE
        self._copied: dict[tuple[str, str], tuple[int, int]] = {}
        if migrate:
            self.migrate()

    def migrate(self) -> None:
        """Upgrade the schema to the latest revision (idempotent)."""
        cfg = Config()
        cfg.set_main_option(
            "script_location", str(resources.files("orchestrator.ledger").joinpath("migrations"))
        )
        try:
            with self.transaction() as connection:
                cfg.attributes["connection"] = connection
                command.upgrade(cfg, "head")
        except OperationalError as exc:
            raise LedgerError(f"cannot open ledger {_safe(self.url)}: {exc.orig}") from None

    def close(self) -> None:
        with self._pools_lock:
            pools, self._pools = self._pools, {}
        for pool in pools.values():
            pool.shutdown(wait=False)
        self.engine.dispose()

    async def in_thread(self, func: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T:
        """Run ``func(*args, **kwargs)``, short blocking ledger work, in the ledger's own threads.

        Not in the event loop's default executor: plugins run their blocking calls there
        (SendGrid's posts, a regulator filing), and a provider that is slow to answer would
        hold every one of its threads, leaving heartbeats, claims and settlements waiting
        behind it until the worker looked dead.
        """
        return await self._run("breach-ledger", LEDGER_THREADS, func, *args, **kwargs)

    async def in_long_thread(self, func: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T:
        """As :meth:`in_thread`, for work that lasts minutes (a fan-out over a million people):
        in threads apart, so the heartbeat never waits behind it."""
        return await self._run("breach-fanout", LONG_THREADS, func, *args, **kwargs)

    async def _run(
        self, name: str, size: int, func: Callable[..., _T], /, *args: Any, **kwargs: Any
    ) -> _T:
        pool = self._pools.get(name)
        if pool is None:
            with self._pools_lock:
                pool = self._pools.get(name)
                if pool is None:
                    pool = self._pools[name] = ThreadPoolExecutor(size, name)
        context = contextvars.copy_context()  # as asyncio.to_thread: log context carries over
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            pool, functools.partial(context.run, func, *args, **kwargs)
        )

    @contextmanager
    def session(self) -> Iterator[Session]:
        """An ORM session in one transaction; storage failures become :class:`LedgerError`."""
        with self._told(), self._one_at_a_time(), self._storage(), self.sessions.begin() as session:
            yield session

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A connection in one transaction; storage failures become :class:`LedgerError`."""
        with (
            self._told(),
            self._one_at_a_time(),
            self._storage(),
            self.engine.begin() as connection,
        ):
            yield connection

    @contextmanager
    def _told(self) -> Iterator[None]:
        """Run one transaction; once it committed, tell :attr:`listeners` what it announced
        (a rolled-back one announced nothing)."""
        said = self._unsaid()
        depth = getattr(self._local, "depth", 0)
        self._local.depth = depth + 1
        try:
            yield
        except BaseException:
            if depth == 0:
                said.clear()
            raise
        finally:
            self._local.depth = depth
        if depth == 0 and said:  # the outermost transaction committed
            what = sorted(said)
            said.clear()
            for listener in list(self.listeners):
                for item in what:
                    try:
                        listener(item)
                    except Exception as exc:  # the write stands: a wake-up is only a hint
                        log.warning("a ledger listener failed", extra={"error": repr(exc)})

    def _unsaid(self) -> set[str]:
        """The announcements of this thread's open transaction (see ``_announce``)."""
        said: set[str] | None = getattr(self._local, "said", None)
        if said is None:
            said = self._local.said = set()
        return said

    def _one_at_a_time(self) -> AbstractContextManager[Any]:
        return self._turn if self._turn is not None else nullcontext()

    @contextmanager
    def _storage(self) -> Iterator[None]:
        # A locked, read-only or full database is the operator's to fix, and nothing is lost
        # (the transaction rolled back): say so in one line instead of a driver traceback.
        try:
            yield
        except OperationalError as exc:
            raise LedgerUnavailable(
                f"the ledger {_safe(self.url)} cannot be used: {_reason(exc)}; fix that and run "
                "the command again (nothing was lost: the change was rolled back)"
            ) from None
        except DataError as exc:  # a value the database will not keep (PostgreSQL: too long)
            raise LedgerError(
                f"the ledger {_safe(self.url)} refused a value: {_reason(exc)} (nothing was "
                "lost: the change was rolled back)"
            ) from None

    # -- incidents -----------------------------------------------------------------------------

    def add_incident(
        self, incident: Incident, steps: Iterable[Step], events: Iterable[IncidentEvent] = ()
    ) -> None:
        """Create an incident with its steps and its first timeline events, all or nothing."""
        with self.session() as s:
            s.add(incident)
            s.flush()
            s.add_all(list(steps))
            # A new incident: its chain starts here, and nobody else can see it before commit.
            self._chain(s, list(events), {incident.id: chain.GENESIS})
            self._announce(s.connection(), "incident")

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
            if "approved_by" in values or "due_at" in values:
                self._announce(s.connection(), "step")  # an approval, or a clock started

    # -- deliveries ----------------------------------------------------------------------------

    def insert_deliveries(
        self,
        rows: Sequence[Mapping[str, Any]],
        *,
        progress: tuple[str, str, int, bool] | None = None,
    ) -> list[int]:
        """Insert one batch of delivery rows (dicts of Delivery columns) in one transaction.

        Returns the positions of rows whose (incident, step, recipient) already existed — a
        duplicate id in the audience. Those are recorded as ``skipped`` rows of their own (the
        recipient id suffixed with the source row) so that nothing is lost or silently merged.

        ``progress`` = (incident, step, last audience row, finished) is written in the same
        transaction, so a fan-out killed at any moment resumes exactly after its last batch. It
        is written first, and only while this worker holds the step's fan-out: a worker that
        lost it gets :class:`~orchestrator.errors.LeaseLost` and the batch is not recorded.

        PostgreSQL loads the batch with one binary COPY (through a temporary table and ``INSERT
        ... ON CONFLICT DO NOTHING`` when a row conflicts, see ``bulk.copy_deliveries``); SQLite
        inserts it with one executemany.
        """
        if self.is_postgres:
            full = [{**_DELIVERY_DEFAULTS, **row} for row in rows]
            repeated = self._copy_deliveries(full, progress)
            if progress is not None:
                self._analyze_after(progress[:2], len(full))
            return repeated
        # A column no row sets and whose default is NULL is left out of the statement: binding
        # it for every row costs more than SQLite's writing it.
        present = set().union(*rows)
        defaults = {k: v for k, v in _DELIVERY_DEFAULTS.items() if v is not None or k in present}
        full = [{**defaults, **row} for row in rows]
        try:
            # One executemany of plain tuples (bulk.py), several times faster than ORM bulk.
            with self.transaction() as connection:
                self._progress(connection, progress)
                bulk.insert_many(connection, DELIVERIES, full)
                self._announce(connection, "deliveries")
            return []
        except IntegrityError:
            pass  # somewhere in the batch is a duplicate: go row by row to find it
        duplicates: list[int] = []
        with self.transaction() as connection:
            self._progress(connection, progress)
            for position, row in enumerate(full):
                # RETURNING says whether the row went in: PostgreSQL reports no rowcount here
                if connection.execute(self._insert_new(row)).first() is not None:
                    continue
                duplicates.append(position)
                connection.execute(self._insert_new(_duplicate_row(row)))
            self._announce(connection, "deliveries")
        return duplicates

    def _copy_deliveries(
        self, full: Sequence[dict[str, Any]], progress: tuple[str, str, int, bool] | None
    ) -> list[int]:
        duplicates: list[int] = []
        with self.transaction() as connection:
            self._progress(connection, progress)
            if full:
                inserted = bulk.copy_deliveries(connection, full)
                for position, row in enumerate(full):
                    mark = (row["key"], row["recipient_row"])
                    if inserted[mark] > 0:
                        inserted[mark] -= 1
                        continue
                    duplicates.append(position)
                    connection.execute(self._insert_new(_duplicate_row(row)))
                self._announce(connection, "deliveries")
        return duplicates

    def _analyze_after(self, step: tuple[str, str], rows: int) -> None:
        """ANALYZE deliveries once the fan-out of ``step`` copied :data:`ANALYZE_AFTER_ROWS`,
        then at every doubling.

        PostgreSQL plans by its statistics, and autovacuum refreshes them a minute or more after
        a table grew by a tenth; a fan-out grows it by thousands of rows a second. Planned on
        the statistics of a nearly empty table, the same-address lookup read every row of the
        step for each batch (a fan-out of 2,500 people a second, slower the further it went)."""
        copied, due = self._copied.get(step, (0, ANALYZE_AFTER_ROWS))
        copied += rows
        if copied >= due:
            due = copied * 2
            try:
                with self.transaction() as connection:
                    connection.exec_driver_sql("ANALYZE deliveries")
            except LedgerError as exc:  # planning goes on, only slower
                log.warning("deliveries not analyzed", extra={"error": str(exc)})
        self._copied[step] = (copied, due)

    def _progress(self, connection: Any, progress: tuple[str, str, int, bool] | None) -> None:
        if progress is None:
            return
        incident_id, step_id, last_row, finished = progress
        self._fence(connection, (incident_id, step_id),
                    {"fanout_rows": last_row, "fanout_done": finished})  # fmt: skip

    def _insert_new(self, row: Mapping[str, Any]) -> Any:
        """INSERT ... ON CONFLICT DO NOTHING RETURNING id for this ledger's dialect (a row
        back: inserted; none: it conflicted)."""
        name = self.engine.dialect.name
        dialect_insert = _DIALECT_INSERTS.get(name)
        if dialect_insert is None:
            raise LedgerError(f"unsupported ledger database: {name} (use SQLite or PostgreSQL)")
        statement = dialect_insert(DELIVERIES).values(**row).on_conflict_do_nothing()
        return statement.returning(DELIVERIES.c.id)

    def address_holders(self, keys: Sequence[bytes]) -> dict[bytes, str]:
        """address key -> recipient id of the row holding it, for those of ``keys`` already
        recorded (one indexed read per chunk). A key names its step: see
        ``orchestrator.sharing.address_key``."""
        statement = _address_holders_statement()
        found: dict[bytes, str] = {}
        with self.transaction() as connection:
            for chunk in _in_chunks(keys):
                rows = bulk.select_in(connection, statement, "keys", chunk, {})
                found.update((bytes(k), str(r)) for k, r in rows)
        return found

    def delivery_counts(
        self, incident_id: str, *, by: Literal["step", "channel"] = "step"
    ) -> dict[str, dict[str, int]]:
        """step id (or channel) -> state -> count."""
        column = Delivery.step_id if by == "step" else Delivery.channel
        out: dict[str, dict[str, int]] = {}
        with self.session() as s:
            rows = s.execute(
                select(column, Delivery.state, func.count())
                .where(Delivery.incident_id == incident_id)
                .group_by(column, Delivery.state)
            )
            for key, state, n in rows:
                out.setdefault(str(key), {})[str(state)] = int(n)
        return out

    def reasons(self, incident_id: str, step_id: str | None = None) -> dict[str, dict[str, int]]:
        """step id -> skip/failure reason -> count; the sharers of an address ("same address
        as <id>") are counted under one reason, ``orchestrator.sharing.SAME_ADDRESS``."""
        out: dict[str, dict[str, int]] = {}
        # every "same address as <id>" is one reason here: a step may have thousands of holders
        reason = case(
            (Delivery.reason.startswith(SAME_ADDRESS_PREFIX, autoescape=True), SAME_ADDRESS),
            else_=Delivery.reason,
        )
        query = (
            select(Delivery.step_id, reason, func.count())
            .where(Delivery.incident_id == incident_id, Delivery.reason.is_not(None))
            .group_by(Delivery.step_id, reason)
        )
        if step_id is not None:
            query = query.where(Delivery.step_id == step_id)
        with self.session() as s:
            for sid, reason, n in s.execute(query):
                out.setdefault(sid, {})[str(reason)] = n
        return out

    def reached(self, incident_id: str) -> int:
        """How many distinct people have at least one sent or delivered message, counting
        those skipped for sharing the address of a message that was (it reached their phone,
        inbox or device: see ``orchestrator.sharing``)."""
        done = (DeliveryState.SENT.value, DeliveryState.DELIVERED.value)
        table = DELIVERIES
        holder = table.alias("holder")
        holder_reached = (
            select(holder.c.id)
            .where(holder.c.incident_id == incident_id, holder.c.step_id == table.c.step_id,
                   holder.c.recipient_id == table.c.shares_with, holder.c.state.in_(done))
            .exists()
        )  # fmt: skip
        query = select(func.count(func.distinct(table.c.recipient_id))).where(
            table.c.incident_id == incident_id,
            or_(table.c.state.in_(done) & table.c.contact.is_not(None),
                table.c.shares_with.is_not(None) & holder_reached),
        )  # fmt: skip
        with self.transaction() as connection:
            return int(connection.scalar(query) or 0)

    def reached_by_channel(self, incident_id: str) -> dict[str, int]:
        """Channel -> distinct people with a sent or delivered message on it (one statement)."""
        done = (DeliveryState.SENT.value, DeliveryState.DELIVERED.value)
        with self.session() as s:
            rows = s.execute(
                select(Delivery.channel, func.count(func.distinct(Delivery.recipient_id)))
                .where(
                    Delivery.incident_id == incident_id,
                    Delivery.state.in_(done),
                    Delivery.contact.is_not(None),
                )
                .group_by(Delivery.channel)
            ).all()
        return {str(channel): int(n) for channel, n in sorted(rows)}

    def filings(self, incident_id: str) -> list[Delivery]:
        """The incident's regulator deliveries that were made (sent or delivered), oldest
        first: what a later report phase references."""
        done = (DeliveryState.SENT.value, DeliveryState.DELIVERED.value)
        with self.session() as s:
            return list(
                s.scalars(
                    select(Delivery)
                    .where(
                        Delivery.incident_id == incident_id,
                        Delivery.channel == "regulator",
                        Delivery.state.in_(done),
                    )
                    .order_by(Delivery.created_at, Delivery.id)
                )
            )

    # -- dispatch ------------------------------------------------------------------------------

    def claim(self, notifier: str, limit: int, lease_seconds: float) -> list[dict[str, Any]]:
        """Lease up to ``limit`` due deliveries of ``notifier`` for sending: dicts of the columns
        a message is rebuilt from (:data:`CLAIMED`).

        Due means pending with its next attempt time passed, or ``sending`` with an expired
        lease (its worker died): the latter counts a reclaim, since the provider may already
        have the message. PostgreSQL workers skip rows another worker holds (SKIP LOCKED).
        """
        current = now()
        statements = _claim_statements(self.engine.dialect.name == "postgresql")
        params = {"by": notifier, "now": current,
                  "lease": current + timedelta(seconds=lease_seconds)}  # fmt: skip
        claimed: list[dict[str, Any]] = []
        with self.transaction() as connection:
            for statement in statements:
                wanted = limit - len(claimed)
                if wanted <= 0:
                    break
                claimed += bulk.fetch_all(connection, statement, {**params, "n": wanted})
        return claimed

    def release(self, keys: Sequence[str]) -> int:
        """Give back claimed deliveries that were never handed to a provider: pending again,
        due now, the claim's attempt undone. Only rows still ``sending`` change."""
        statement = _release_statement()
        params = {"now": now()}
        changed = 0
        with self.transaction() as connection:
            for chunk in _in_chunks(keys):
                changed += bulk.execute_in(connection, statement, "keys", chunk, params)
        return changed

    def settle(self, outcomes: Sequence[Mapping[str, Any]]) -> int:
        """Record send outcomes: dicts with key, state, and provider_message_id, error, reason,
        next_attempt_at, sent_at, uncertain. Only rows still ``sending`` change (a cancelled or
        reclaimed row keeps what happened to it since). An ``uncertain`` outcome (the provider
        may have the message although it did not say so) counts the row among the possible
        duplicates, as an expired lease does.

        A provider receipt that arrived while the row was ``sending`` (parked by
        :meth:`apply_receipts`) decides the final state when it names the provider message id
        this send returned; otherwise it is dropped (it was about another message, or forged).

        The same transaction appends one audit row per incident of the batch (``deliveries.
        settled``: counts per new state and a digest of the deliveries it made final, see
        :mod:`.settlements`), so every settlement is evidenced in the chain.
        """
        if not outcomes:
            return 0
        current = now()
        # What a provider answered is kept as the columns can hold it: a settlement that
        # failed on it would leave its rows leased, to be sent again once the lease ran out.
        rows = [
            {"k": o["key"], "state": o["state"], "pid": _provider_id(o.get("provider_message_id")),
             "error": _text(o.get("error")), "reason": _text(o.get("reason")),
             "nxt": o.get("next_attempt_at"), "sent": o.get("sent_at"), "now": current,
             "maybe": int(bool(o.get("uncertain")))}
            for o in outcomes
        ]  # fmt: skip
        statements = _settle_statements()
        with self.transaction() as connection:
            found: list[settlements.Settled] = []
            alike: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
            for r in rows:
                alike.setdefault(_settled_values(r), []).append(r)
            # Outcomes that set the same values (an e-mail batch: all sent, one message id) are
            # one UPDATE ... WHERE key IN (...) RETURNING what the evidence covers; the rest one
            # executemany of per-row updates, whose changed rows are read back after.
            single: list[dict[str, Any]] = []
            for values, group in alike.items():
                if len(group) == 1:
                    single += group  # the row's own parameters are the statement's
                    continue
                params = dict(zip(_SETTLED_VALUES, values, strict=True), now=current)
                found += _settled_rows(connection, statements.alike, "keys",
                                       [r["k"] for r in group], params)  # fmt: skip
            if single:
                bulk.execute_many(connection, statements.one, single)
            # rows an update changed without returning them: those it stamped ``current``
            stamped = {"now": current}
            unsure = _unreturned(rows, found)
            found += _settled_rows(connection, statements.settled, "keys",
                                   [r["k"] for r in unsure], stamped)  # fmt: skip
            # What is left holds a parked receipt (rare), which decides it, or is no longer
            # sending (cancelled, reclaimed), which nothing here changes.
            if parked := _unreturned(unsure, found):
                bulk.execute_many(connection, statements.received, parked)
                found += _settled_rows(connection, statements.settled, "keys",
                                       [r["k"] for r in parked], stamped)  # fmt: skip
            if found:  # evidence: one chained audit row per incident, beside the change
                self._evidence(connection, found, "settle", current)
        return len(found)

    def apply_receipts(
        self, updates: Iterable[ReceiptUpdate], *, notifiers: Collection[str] | None = None
    ) -> int:
        """Apply provider receipts to the deliveries they are about; returns how many changed.

        A receipt names its delivery by the provider's message id, and by our delivery key as
        well when the provider echoes it: a key alone (predictable from incident, step and
        recipient) matches nothing. ``notifiers`` confines a receipt handler to the deliveries
        its own plugin's notifiers sent. A settled (``sent``) delivery moves to delivered or
        failed, never backwards. A receipt that overtakes its send (the row is still
        ``sending``) is parked on the row, counted as changed, and decides the row's state when
        the send settles with the same provider message id. Receipts that change states are
        evidenced like a settle, one ``deliveries.receipted`` audit row per incident.
        """
        scope = sorted(notifiers) if notifiers is not None else None
        changed = 0
        current = now()
        failed = DeliveryState.FAILED.value
        moved: list[str] = []  # provider ids of receipts that changed a delivery's state
        with self.transaction() as connection:

            def run(statement: Any, params: dict[str, Any]) -> int:
                if scope is None:
                    return bulk.execute_one(connection, statement, params)
                return bulk.execute_in(connection, statement, "notifiers", scope, params)

            for receipt in updates:
                if not receipt.provider_id:
                    continue  # a bare delivery key is not proof enough
                provider_id = provider_id_kept(receipt.provider_id)  # as the send kept it
                params = {
                    "pid": provider_id, "k": receipt.delivery_key, "state": receipt.state,
                    "outcome": receipt.outcome.value, "now": current,
                    "why": _text(receipt.reason or receipt.event or receipt.outcome.value)
                    if receipt.state == failed else None,
                }  # fmt: skip
                keyed = bool(receipt.delivery_key)
                settled = run(_receipt_statement("settle", keyed, scope is not None), params)
                if settled:
                    moved.append(provider_id)
                elif keyed:
                    settled = run(_receipt_statement("park", True, scope is not None), params)
                changed += settled
            if moved:  # parked receipts change no state: the settle evidences them
                found = _settled_rows(connection, _receipted_statement(), "pids",
                                      sorted(set(moved)), {"now": current})  # fmt: skip
                self._evidence(connection, found, "receipt", current)
        return changed

    def _evidence(
        self,
        connection: Connection,
        found: Sequence[settlements.Settled],
        source: Literal["settle", "receipt"],
        current: datetime,
    ) -> None:
        """Append the audit rows of one settle or receipt batch: the deliveries ``found`` that
        this transaction changed (their ``updated_at`` is its ``current``), per incident."""
        kind = settlements.SETTLED if source == "settle" else settlements.RECEIPTED
        for incident_id, detail in sorted(settlements.details(found, source).items()):
            steps = detail["steps"]
            event = IncidentEvent(incident_id, kind, steps[0] if len(steps) == 1 else None,
                                  detail, at=current)  # fmt: skip
            self._append(connection, event)

    def _append(self, connection: Connection, event: IncidentEvent) -> None:
        """Append one chained audit row within ``connection``'s transaction (Core, for the
        statements that write deliveries through a connection)."""
        if self.engine.dialect.name == "postgresql":
            # hold the incident's chain until commit (see _lock_chain); SQLite already holds
            # its one write lock, taken by the delivery update before this
            connection.execute(_settle_statements().lock, {"incident": event.incident_id})
        previous = self._head(connection, event.incident_id)
        row = _audit_row(event)
        content = chain.canonical(row.incident_id, row.at, row.kind, row.step_id, row.actor,
                                  row.detail)  # fmt: skip
        connection.execute(_settle_statements().audit, {
            "incident_id": row.incident_id, "at": row.at, "kind": row.kind,
            "step_id": row.step_id, "actor": row.actor, "detail": row.detail,
            "prev_hash": previous, "hash": chain.row_hash(previous, content),
        })  # fmt: skip

    def fallback_candidates(
        self,
        incident_id: str,
        step_id: str,
        triggers: Sequence[str],
        *,
        older_than: datetime,
        limit: int = 10_000,
    ) -> list[str]:
        """Recipients of a step who need its fallback and have no fallback row yet: their
        delivery failed (``failed``: any failure or dead; ``bounce`` / ``undelivered``: a provider
        receipt with that :class:`ReceiptOutcome`), or was sent before ``older_than`` and never
        confirmed (``no_receipt``). The people skipped because they share the address of such a
        delivery (``orchestrator.sharing``) need it too: the message they shared did not reach
        them either, and their fallback goes to their own address."""
        table = DELIVERIES
        failed = table.c.state == DeliveryState.FAILED.value
        wanted: list[ColumnElement[bool]] = []
        if "failed" in triggers:
            wanted.append(table.c.state.in_((DeliveryState.FAILED.value,
                                              DeliveryState.DEAD.value)))  # fmt: skip
        outcomes = [OUTCOME_TRIGGERS[t].value for t in triggers if t in OUTCOME_TRIGGERS]
        if outcomes:
            wanted.append(failed & table.c.receipt_outcome.in_(outcomes))
        if "no_receipt" in triggers:
            wanted.append((table.c.state == DeliveryState.SENT.value)
                          & (table.c.sent_at <= older_than))  # fmt: skip
        if not wanted:
            return []
        needing = (
            select(table.c.recipient_id)
            .where(table.c.incident_id == incident_id, table.c.step_id == step_id,
                   table.c.contact.is_not(None), or_(*wanted))
        )  # fmt: skip
        query = needing.where(~_has_fallback(table, incident_id, step_id)).limit(limit)
        sharer = table.alias("sharer")
        # a holder whose own fallback went out already still owes it to its sharers
        sharers = (
            select(sharer.c.recipient_id)
            .where(sharer.c.incident_id == incident_id, sharer.c.step_id == step_id,
                   sharer.c.shares_with.in_(needing),
                   ~_has_fallback(sharer, incident_id, step_id))
        )  # fmt: skip
        with self.transaction() as connection:
            found = [str(r) for r in connection.execute(query).scalars()]
            if len(found) < limit:
                more = connection.execute(sharers.limit(limit - len(found))).scalars()
                found += [str(r) for r in more]
            return found

    def step_active(self, incident_id: str, step_id: str) -> bool:
        """Whether the step (or its fallback) still has deliveries pending or being sent."""
        table = DELIVERIES
        query = select(table.c.id).where(
            table.c.incident_id == incident_id,
            table.c.step_id.in_((step_id, step_id + FALLBACK_SUFFIX)),
            table.c.state.in_(ACTIVE),
        ).limit(1)  # fmt: skip
        with self.transaction() as connection:
            return connection.execute(query).first() is not None

    def sent_since(self, incident_id: str, step_id: str, since: datetime) -> bool:
        """Whether some delivery of the step was sent after ``since`` and is unconfirmed (its
        receipt may still come)."""
        table = DELIVERIES
        query = select(table.c.id).where(
            table.c.incident_id == incident_id, table.c.step_id == step_id,
            table.c.state == DeliveryState.SENT.value, table.c.sent_at > since,
        ).limit(1)  # fmt: skip
        with self.transaction() as connection:
            return connection.execute(query).first() is not None

    def pending_counts(self) -> dict[str, int]:
        """notifier -> deliveries pending or sending (what dispatch still has to do)."""
        table = DELIVERIES
        with self.transaction() as connection:
            rows = connection.execute(
                select(table.c.notifier, func.count())
                .where(table.c.state.in_(ACTIVE))
                .group_by(table.c.notifier)
            )
            return {str(n): int(c) for n, c in rows}

    def active_notifiers(self) -> set[str]:
        """The notifiers with deliveries pending or sending: :meth:`pending_counts` without the
        counts, for the loops that ask every second or faster.

        Counting read every active row (at 400,000 pending: 25 ms on SQLite, where it holds the
        writers back meanwhile, and 90 ms on PostgreSQL). This walks the dispatch index instead:
        each notifier the table knows, found by one descent from the last, then whether it has
        an active row, by another."""
        found: set[str] = set()
        with self.transaction() as connection:
            for (notifier,) in connection.execute(_NOTIFIERS):
                if connection.execute(_ACTIVE_ROW, {"notifier": notifier}).first() is not None:
                    found.add(str(notifier))
        return found

    def next_retry_at(self) -> datetime | None:
        """When the earliest pending delivery becomes due (None: nothing pending)."""
        table = DELIVERIES
        with self.transaction() as connection:
            return cast(datetime | None, connection.execute(
                select(func.min(table.c.next_attempt_at))
                .where(table.c.state == DeliveryState.PENDING.value)
            ).scalar())  # fmt: skip

    def open_steps(self) -> list[Step]:
        """Steps of open incidents that still have to fire, wait for approval, or finish."""
        waiting = (StepState.SCHEDULED.value, StepState.AWAITING_APPROVAL.value,
                   StepState.RUNNING.value)  # fmt: skip
        with self.session() as s:
            return list(s.scalars(
                select(Step).join(Incident, Incident.id == Step.incident_id)
                .where(Step.state.in_(waiting), Incident.state.in_(("open", "running")),
                       Incident.mode != "dry-run")
                .order_by(Step.due_at, Step.position)))  # fmt: skip

    def finish_steps(self, hold: Iterable[tuple[str, str]] = ()) -> list[tuple[str, str]]:
        """Mark running steps whose fan-out ended and whose deliveries all settled as done.

        Steps in ``hold`` (incident, step) stay running: they may still owe fallbacks.
        """
        held = set(hold)
        table = DELIVERIES
        busy = (
            select(table.c.id)
            .where(table.c.incident_id == Step.incident_id,
                   table.c.step_id.in_((Step.step_id, Step.step_id + FALLBACK_SUFFIX)),
                   table.c.state.in_(ACTIVE))
            .exists()
        )  # fmt: skip
        with self.session() as s:
            found = list(
                s.execute(
                    select(Step.incident_id, Step.step_id).where(
                        Step.state == StepState.RUNNING.value, Step.fanout_done, ~busy
                    )
                )
            )
            done = [(i, st) for i, st in found if (i, st) not in held]
            for incident_id, step_id in done:
                s.execute(
                    update(Step)
                    .where(
                        Step.incident_id == incident_id,
                        Step.step_id == step_id,
                        Step.state == StepState.RUNNING.value,
                    )
                    .values(state=StepState.DONE.value, finished_at=now())
                )
            return [(i, st) for i, st in done]  # fmt: skip

    def finish_incidents(self) -> list[str]:
        """Mark running incidents whose steps are all settled as finished."""
        open_states = (StepState.SCHEDULED.value, StepState.AWAITING_APPROVAL.value,
                       StepState.RUNNING.value, StepState.WAITING.value)  # fmt: skip
        unsettled = (
            select(Step.id)
            .where(Step.incident_id == Incident.id, Step.state.in_(open_states))
            .exists()
        )
        with self.session() as s:
            ids = list(
                s.scalars(
                    select(Incident.id).where(
                        Incident.state.in_(("open", "running")),
                        Incident.mode != "dry-run",
                        ~unsettled,
                    )
                )
            )
            if ids:
                s.execute(update(Incident).where(Incident.id.in_(ids)).values(state="finished"))
            return ids

    def cancel(self, incident_id: str, reason: str) -> int:
        """Stop an incident: unfired steps cancelled, pending deliveries skipped with ``reason``.

        Deliveries already handed to a provider (``sending``) finish normally. Returns how many
        pending deliveries were skipped.
        """
        self.incident(incident_id)  # NotFound for an unknown id
        current = now()
        with self.session() as s:
            s.execute(update(Incident).where(Incident.id == incident_id).values(state="cancelled"))
            s.execute(
                update(Step)
                .where(
                    Step.incident_id == incident_id,
                    Step.state.in_(
                        (
                            StepState.SCHEDULED.value,
                            StepState.AWAITING_APPROVAL.value,
                            StepState.WAITING.value,
                        )
                    ),
                )
                .values(state=StepState.CANCELLED.value, finished_at=current)
            )
            result = s.connection().execute(
                update(DELIVERIES)
                .where(DELIVERIES.c.incident_id == incident_id,
                       DELIVERIES.c.state == DeliveryState.PENDING.value)
                .values(state=DeliveryState.SKIPPED.value, reason=reason,
                        next_attempt_at=None, updated_at=current))  # fmt: skip
            return int(result.rowcount)

    def reclaimed(self, incident_id: str) -> int:
        """The possible duplicates: how many extra copies of its messages the providers may
        hold. Each time a send was cut off (a lease expired mid-send) or went unanswered and
        was tried again, one more copy may exist; a delivery can count more than once."""
        # ``reclaims > 0`` is the condition of the partial index that holds only those rows
        query = select(func.coalesce(func.sum(Delivery.reclaims), 0)).where(
            Delivery.incident_id == incident_id, Delivery.reclaims > 0
        )
        with self.session() as s:
            return int(s.scalar(query) or 0)

    # -- updates -------------------------------------------------------------------------------

    @staticmethod
    def _notified_query(incident_id: str, before: datetime, mark: str) -> Any:
        """Deliveries that gave a person an earlier notice of the incident: on a step whose id
        holds no ``mark`` (not a follow-up, ``STEP@N``), settled sent or delivered before
        ``before``."""
        table = DELIVERIES
        settled = func.coalesce(table.c.sent_at, table.c.updated_at)
        return (
            table.c.incident_id == incident_id,
            table.c.contact.is_not(None),
            table.c.state.in_((DeliveryState.SENT.value, DeliveryState.DELIVERED.value)),
            ~table.c.step_id.contains(mark, autoescape=True),
            settled <= before,
        )

    def notified(
        self, incident_id: str, *, before: datetime, mark: str
    ) -> tuple[int, datetime | None]:
        """How many people had received an earlier notice of the incident before ``before``
        (on steps whose id holds no ``mark``), and when the first of those notices went out."""
        table = DELIVERIES
        settled = func.coalesce(table.c.sent_at, table.c.updated_at)
        query = select(func.count(func.distinct(table.c.recipient_id)), func.min(settled)).where(
            *self._notified_query(incident_id, before, mark)
        )
        with self.transaction() as connection:
            count, first = connection.execute(query).one()
        if isinstance(first, datetime) and first.tzinfo is None:
            first = first.replace(tzinfo=UTC)  # SQLite hands back naive UTC from a bare min()
        return int(count or 0), first

    def notified_ids(self, incident_id: str, *, before: datetime, mark: str) -> set[str]:
        """The recipient ids of the people :meth:`notified` counts."""
        table = DELIVERIES
        query = select(table.c.recipient_id).where(*self._notified_query(incident_id, before, mark))
        with self.transaction() as connection:
            return {str(r) for r in connection.execute(query.distinct()).scalars()}

    def in_flight(self, incident_id: str, *, mark: str) -> tuple[set[str], datetime | None]:
        """The recipients whose earlier notice (on a step whose id holds no ``mark``) is being
        handed to a provider now, and when the last of those leases ends: their messages were
        rendered already, and settle, or are reclaimed, by then."""
        table = DELIVERIES
        query = select(table.c.recipient_id, table.c.lease_until).where(
            table.c.incident_id == incident_id, table.c.contact.is_not(None),
            table.c.state == DeliveryState.SENDING.value,
            ~table.c.step_id.contains(mark, autoescape=True),
        )  # fmt: skip
        with self.transaction() as connection:
            rows = list(connection.execute(query))
        ends = [r.lease_until for r in rows if r.lease_until is not None]
        return {str(r.recipient_id) for r in rows}, max(ends) if ends else None

    def add_update(
        self,
        incident_id: str,
        *,
        expected_version: int,
        facts: Mapping[str, Any],
        steps: Sequence[Step],
        event: IncidentEvent,
        reopen: bool,
    ) -> None:
        """Record an update in one transaction: the new facts (a new facts version), its
        follow-up steps and its audit event; a finished incident runs again when ``reopen``.
        Refused with :class:`StateConflict` when the facts changed meanwhile (a concurrent
        update or alert): nothing is written, and the update can be run again."""
        with self.session() as s:
            self._lock_chain(s, incident_id)
            values: dict[str, Any] = {"facts": dict(facts), "facts_version": expected_version + 1}
            if reopen:
                values["state"] = "running"
            changed = s.connection().execute(
                update(Incident)
                .where(Incident.id == incident_id, Incident.facts_version == expected_version,
                       Incident.state.not_in(("cancelled", "closed")))
                .values(**values)
            ).rowcount  # fmt: skip
            if changed != 1:
                raise StateConflict(f"incident {incident_id} changed while the update was being "
                                    "recorded (another update, an alert, a cancellation); "
                                    "nothing was written: run it again")  # fmt: skip
            s.add_all(list(steps))
            s.flush()
            self._chain(s, [event], {})

    # -- audit ---------------------------------------------------------------------------------

    def record(self, event: IncidentEvent) -> None:
        """Append ``event`` to its incident's audit trail, chained to the row before it."""
        with self.session() as s:
            self._lock_chain(s, event.incident_id)
            self._chain(s, [event], {})

    def _lock_chain(self, s: Session, incident_id: str) -> None:
        """Hold the incident's chain until commit, so two writers never follow the same row."""
        if self.engine.dialect.name == "postgresql":
            s.execute(select(Incident.id).where(Incident.id == incident_id).with_for_update())
        else:
            # SQLite has one writer at a time: start the write transaction before reading the
            # head, so the head read is the one this row follows (a no-op write takes the lock).
            s.execute(update(AuditEvent).where(AuditEvent.id < 0).values(kind=AuditEvent.kind))

    def _chain(self, s: Session, events: Sequence[IncidentEvent], heads: dict[str, str]) -> None:
        """Add ``events`` in order, each with the hash of its incident's previous row."""
        for happened in events:
            previous = heads.get(happened.incident_id) or self._head(s, happened.incident_id)
            row = _audit_row(happened)
            row.prev_hash = previous
            row.hash = chain.row_hash(previous, chain.canonical(
                row.incident_id, row.at, row.kind, row.step_id, row.actor, row.detail))  # fmt: skip
            heads[happened.incident_id] = row.hash
            s.add(row)
        s.flush()

    @staticmethod
    def _head(s: Session | Connection, incident_id: str) -> str:
        newest = s.scalar(_settle_statements().head, {"incident": incident_id})
        return newest or chain.GENESIS

    def events(self, incident_id: str) -> list[AuditEvent]:
        with self.session() as s:
            return list(
                s.scalars(
                    select(AuditEvent)
                    .where(AuditEvent.incident_id == incident_id)
                    .order_by(AuditEvent.id)
                )
            )

    def verify_chain(self, incident_id: str) -> chain.ChainReport:
        """Walk the incident's audit chain, oldest row first (see :func:`chain.verify`); when
        it holds, recompute every settle and receipt batch's digest from the deliveries table
        (see :func:`settlements.check_batches`)."""
        events = self.events(incident_id)
        report = chain.verify(incident_id, events)
        if not report.intact:
            return report
        batches = [e for e in events if e.kind in settlements.KINDS]
        with self.transaction() as connection:

            def read(ids: Sequence[int]) -> dict[int, tuple[str, str, str | None]]:
                table, out = DELIVERIES, {}
                for chunk in _in_chunks(ids):
                    out.update({
                        int(i): (str(k), str(s), p)
                        for i, k, s, p in connection.execute(
                            select(table.c.id, table.c.key, table.c.state,
                                   table.c.provider_message_id)
                            .where(table.c.incident_id == incident_id,
                                   table.c.id.in_(chunk)))
                    })  # fmt: skip
                return out

            check = settlements.check_batches(batches, read)
        report = dataclasses.replace(report, batches=check.batches, deliveries=check.deliveries)
        if check.problem is None:
            return report
        return dataclasses.replace(
            report, broken_row=check.problem.row, broken_kind=check.problem.kind,
            reason=check.problem.reason, deliveries_changed=True,
        )  # fmt: skip

    def delivery_batches(
        self, incident_id: str, size: int = 5000, *, recipient_prefix: str | None = None
    ) -> Iterator[list[Delivery]]:
        """The incident's deliveries in id order, ``size`` rows per batch (never all at once);
        only those whose recipient id starts with ``recipient_prefix`` when given."""
        after = 0
        chosen = [Delivery.incident_id == incident_id]
        if recipient_prefix is not None:
            chosen.append(Delivery.recipient_id.startswith(recipient_prefix, autoescape=True))
        while True:
            with self.session() as s:
                batch = list(
                    s.scalars(
                        select(Delivery)
                        .where(*chosen, Delivery.id > after)
                        .order_by(Delivery.id)
                        .limit(size)
                    )
                )
            if not batch:
                return
            yield batch
            after = batch[-1].id


def _settled_rows(
    connection: Any, statement: Any, name: str, values: Sequence[Any], params: Mapping[str, Any]
) -> list[settlements.Settled]:
    """What ``statement`` (a SELECT, or an UPDATE ... RETURNING, of the evidence's columns)
    gives with ``values`` in its expanding parameter ``name``, a chunk at a time: the changed
    deliveries, as the evidence covers them."""
    found: list[settlements.Settled] = []
    for chunk in _in_chunks(values):
        rows = bulk.select_in(connection, statement, name, chunk, params)
        found += map(settlements.Settled._make, rows)
    return found


def _unreturned(
    rows: Sequence[dict[str, Any]], found: Sequence[settlements.Settled]
) -> list[dict[str, Any]]:
    """Those of ``rows`` (settle parameters) whose key is not among the ``found`` rows."""
    if not found:
        return list(rows)
    keys = {f.key for f in found}
    return [r for r in rows if r["k"] not in keys]


def _in_chunks(items: Sequence[_T]) -> Iterator[Sequence[_T]]:
    """``items`` in runs of at most ``_IN_CHUNK``: what one ``IN (...)`` list may hold."""
    for start in range(0, len(items), _IN_CHUNK):
        yield items[start : start + _IN_CHUNK]


#: every notifier named in deliveries, one index descent each (an emulated loose index scan:
#: neither database skips through an index on its own)
_NOTIFIERS = text(
    "WITH RECURSIVE n(notifier) AS ("
    " SELECT min(notifier) FROM deliveries"
    " UNION ALL"
    " SELECT (SELECT min(notifier) FROM deliveries WHERE notifier > n.notifier)"
    " FROM n WHERE n.notifier IS NOT NULL"
    ") SELECT notifier FROM n WHERE notifier IS NOT NULL"
)
#: whether a notifier has a delivery pending or sending (the dispatch index's first columns)
_ACTIVE_ROW = text(
    "SELECT 1 FROM deliveries WHERE notifier = :notifier"
    f" AND state IN ({', '.join(repr(state) for state in ACTIVE)}) LIMIT 1"
)


def _has_fallback(rows: Any, incident_id: str, step_id: str) -> Any:
    """Whether the delivery row of ``rows`` has a fallback row already."""
    fallback_rows = DELIVERIES.alias("fb")
    return (
        select(fallback_rows.c.id)
        .where(fallback_rows.c.incident_id == incident_id,
               fallback_rows.c.step_id == step_id + FALLBACK_SUFFIX,
               fallback_rows.c.recipient_id == rows.c.recipient_id)
        .exists()
    )  # fmt: skip


def _duplicate_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """The ``skipped`` row that records a duplicate recipient id under its own audience row."""
    tag = f"#row{row['recipient_row']}"
    return {
        **row, "key": row["key"][: 200 - len(tag)] + tag,
        "recipient_id": row["recipient_id"][: 200 - len(tag)] + tag,
        "state": DeliveryState.SKIPPED.value, "reason": DUPLICATE_REASON,
        "contact": None, "content_hash": None, "next_attempt_at": None,
        "address_key": None, "shares_with": None,
    }  # fmt: skip


def _provider_id(value: Any) -> str | None:
    """A provider's message id as the ledger keeps it (see :func:`provider_id_kept`)."""
    return None if value is None else provider_id_kept(value)


def _text(value: str | None) -> str | None:
    """An error or reason as the ledger keeps it: at most :data:`MAX_ERROR_CHARS`, storable."""
    return None if value is None else text_kept(shortened(value, MAX_ERROR_CHARS))


def _settle_parked(common: Mapping[str, Any], mine: tuple[Any, ...]) -> Any:
    """The settle of rows that hold a parked receipt: it decides the state when it names the
    provider message id this send returned, and is dropped otherwise."""
    table = DELIVERIES
    verified = table.c.provider_message_id == bindparam("pid")
    failed = verified & (table.c.receipt_outcome != ReceiptOutcome.DELIVERED.value)
    return update(table).where(*mine).values(
        state=case(
            (verified & (table.c.receipt_outcome == ReceiptOutcome.DELIVERED.value),
             DeliveryState.DELIVERED.value),
            (verified, DeliveryState.FAILED.value),
            else_=bindparam("state"),
        ),
        receipt_outcome=case((verified, table.c.receipt_outcome), else_=None),
        provider_message_id=case((verified, table.c.provider_message_id),
                                 else_=bindparam("pid")),
        reason=case((failed, table.c.reason), else_=bindparam("reason")),
        **common,
    )  # fmt: skip


@dataclasses.dataclass(frozen=True)
class _SettleStatements:
    """The statements of settling and of its evidence, built once: building SQLAlchemy
    constructs for every settle cost more than running them (a settle of 32 SMS: 5 ms)."""

    one: Any
    alike: Any
    received: Any
    settled: Any
    head: Any
    lock: Any
    audit: Any


@functools.cache
def _claim_statements(postgres: bool) -> tuple[Any, Any]:
    """The two statements of a claim, built once: expired leases, then due pending rows.

    Two index range scans (``ix_delivery_dispatch``: notifier, state, next attempt), not one OR
    over both states: that reads every row the notifier ever had, sent ones too, and sorts them,
    on every claim. Expired leases come first: they are the oldest work, and each counts a
    reclaim (the provider may have the message already).
    """
    table = DELIVERIES
    expired = select(table.c.id).where(
        table.c.notifier == bindparam("by"),
        table.c.state == DeliveryState.SENDING.value,
        table.c.lease_until < bindparam("now"),
    )
    pending = (
        select(table.c.id)
        .where(table.c.notifier == bindparam("by"),
               table.c.state == DeliveryState.PENDING.value,
               table.c.next_attempt_at <= bindparam("now"))
        .order_by(table.c.next_attempt_at, table.c.id)
    )  # fmt: skip
    out = []
    for pick, reclaim in ((expired, 1), (pending, 0)):
        chosen = pick.limit(bindparam("n"))
        if postgres:  # workers skip the rows another one is claiming
            chosen = chosen.with_for_update(skip_locked=True)
        out.append(
            update(table)
            .where(table.c.id.in_(chosen.scalar_subquery()))
            .values(state=DeliveryState.SENDING.value, lease_until=bindparam("lease"),
                    attempts=table.c.attempts + 1, reclaims=table.c.reclaims + reclaim,
                    updated_at=bindparam("now"))
            .returning(*CLAIMED)
        )  # fmt: skip
    return out[0], out[1]


@functools.cache
def _receipt_statement(kind: Literal["settle", "park"], keyed: bool, scoped: bool) -> Any:
    """The UPDATE of one receipt (``Ledger.apply_receipts``), built once per shape: ``settle``
    moves a ``sent`` delivery named by its provider id (and key, when ``keyed``) to the
    receipt's state; ``park`` keeps it on a delivery still ``sending``, found by its key.
    ``scoped``: only deliveries of the notifiers given as the expanding ``notifiers``."""
    table = DELIVERIES
    where: list[ColumnElement[bool]] = []
    if scoped:
        where.append(table.c.notifier.in_(bindparam("notifiers", expanding=True)))
    values: dict[str, Any] = {
        "receipt_outcome": bindparam("outcome"), "updated_at": bindparam("now"),
        "reason": func.coalesce(bindparam("why"), table.c.reason),
    }  # fmt: skip
    if kind == "settle":
        where.append(table.c.provider_message_id == bindparam("pid"))
        if keyed:
            where.append(table.c.key == bindparam("k"))
        where.append(table.c.state == DeliveryState.SENT.value)
        values["state"] = bindparam("state")
    else:
        where += [table.c.key == bindparam("k"), table.c.state == DeliveryState.SENDING.value,
                  table.c.receipt_outcome.is_(None)]  # fmt: skip
        values["provider_message_id"] = func.coalesce(table.c.provider_message_id,
                                                      bindparam("pid"))  # fmt: skip
    return update(table).where(*where).values(**values)


@functools.cache
def _receipted_statement() -> Select[Any]:
    """The deliveries a batch of receipts made final (its evidence): by provider id, changed
    at the batch's ``now``."""
    table = DELIVERIES
    final = or_(
        table.c.state == DeliveryState.DELIVERED.value, table.c.state == DeliveryState.FAILED.value
    )  # not IN (...): select_in passes one list a statement, the pids
    return select(*_SETTLED_COLUMNS).where(
        table.c.provider_message_id.in_(bindparam("pids", expanding=True)),
        final,
        table.c.updated_at == bindparam("now"),
    )  # fmt: skip


@functools.cache
def _release_statement() -> Any:
    """Claimed rows back to pending, their claim's attempt undone (``Ledger.release``)."""
    table = DELIVERIES
    return (
        update(table)
        .where(table.c.key.in_(bindparam("keys", expanding=True)),
               table.c.state == DeliveryState.SENDING.value)
        .values(state=DeliveryState.PENDING.value, lease_until=None,
                attempts=table.c.attempts - 1, updated_at=bindparam("now"))
    )  # fmt: skip


@functools.cache
def _address_holders_statement() -> Select[Any]:
    """The rows holding any of a list of address keys, read through ``select_in`` (one array on
    PostgreSQL). No incident or step condition: the key holds both, and with one the planner
    may prefer the (incident, step, state) index and read the whole step for every batch. Its
    plan needs current statistics: see :meth:`Ledger._analyze_after`."""
    table = DELIVERIES
    return select(table.c.address_key, table.c.recipient_id).where(
        table.c.address_key.in_(bindparam("keys", expanding=True))
    )


@functools.cache
def _settle_statements() -> _SettleStatements:
    table = DELIVERIES
    sending = table.c.state == DeliveryState.SENDING.value
    keys = table.c.key.in_(bindparam("keys", expanding=True))
    common = {
        "error": bindparam("error"), "next_attempt_at": bindparam("nxt"),
        "sent_at": bindparam("sent"), "reclaims": table.c.reclaims + bindparam("maybe"),
        "lease_until": None, "updated_at": bindparam("now"),
    }  # fmt: skip
    outcome = {
        "state": bindparam("state"), "reason": bindparam("reason"),
        "provider_message_id": func.coalesce(bindparam("pid"), table.c.provider_message_id),
        **common,
    }  # fmt: skip
    mine = (table.c.key == bindparam("k"), sending)
    # a receipt parked on a row while it was sending decides it (``received``)
    unparked = table.c.receipt_outcome.is_(None)
    return _SettleStatements(
        one=update(table).where(*mine, unparked).values(**outcome),
        alike=update(table)
        .where(keys, sending, unparked)
        .values(**outcome)
        .returning(*_SETTLED_COLUMNS),
        received=_settle_parked(common, mine),
        settled=select(*_SETTLED_COLUMNS).where(keys, table.c.updated_at == bindparam("now")),
        head=select(AuditEvent.hash)
        .where(AuditEvent.incident_id == bindparam("incident"))
        .order_by(AuditEvent.id.desc())
        .limit(1),
        lock=select(Incident.id).where(Incident.id == bindparam("incident")).with_for_update(),
        audit=insert(AUDIT),
    )


def _audit_row(event: IncidentEvent) -> AuditEvent:
    return AuditEvent(incident_id=event.incident_id, at=event.at.astimezone(UTC),
                      kind=event.kind, step_id=event.step_id, actor=event.actor,
                      detail=chain.jsonable_detail(event.detail))  # fmt: skip


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets `breach status` read while a campaign writes; NORMAL sync is durable in WAL mode
    # against process crashes (the crash-safety promise), trading only power-loss durability.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    # A fan-out's rows land on random pages of the indexes keyed by hash or recipient id (UUIDs
    # have no order), so each batch dirties most of those pages again. A 16 MB page cache (the
    # default is 2 MB) keeps them between batches, and checkpointing the WAL at 40 MB instead of
    # 4 copies each page into the database once for several batches: with both, 200,000 people
    # with UUID ids planned in 38 µs each instead of 44.
    cursor.execute("PRAGMA cache_size=-16384")
    cursor.execute("PRAGMA wal_autocheckpoint=10000")
    cursor.close()


def _reason(exc: OperationalError | DataError) -> str:
    """The driver's own words, without SQLAlchemy's statement and parameters."""
    orig = getattr(exc, "orig", None)
    return str(orig if orig is not None else exc).split("\n", 1)[0]


def _safe(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<ledger URL>"
