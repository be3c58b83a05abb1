"""What several workers on one ledger share: who is alive, who fans a step out, the pace.

Every ``breach run`` and ``breach serve`` process registers as a **worker** and beats a heartbeat
into the ledger; one whose heartbeat is older than the worker timeout (or that stopped) is dead.

- **Fan-out lease.** A step's fan-out belongs to the worker named in ``steps.fanout_owner``.
  Another worker takes it over only once that worker is dead, and resumes after the last batch
  the dead one recorded. Each batch the owner records re-checks the lease in the batch's own
  transaction (the step row is locked first), so a worker that stalled past its timeout and
  lost the step cannot write a row the new owner writes too: its batch rolls back with
  :class:`~orchestrator.errors.LeaseLost`.
- **Shared pacing.** ``rate_slots`` holds, per notifier, the moment from which its next
  messages may start, on the database's clock. A worker reserves time by pushing it forward in
  one statement (GCRA): every worker together stays under the notifier's rate, a killed worker
  leaves only the slots it had reserved unused, and an idle one takes nothing.
- **Wake-ups.** On PostgreSQL a batch of new deliveries, a new incident or an approval sends
  ``NOTIFY breach_work`` in its own transaction; idle workers ``LISTEN`` and look at once.

Claimed deliveries need nothing new: their lease (``deliveries.lease_until``) already expires
when their worker dies, and the next claim counts the row among the possible duplicates.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    Connection,
    Engine,
    Table,
    exists,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.sql.elements import ColumnElement

from ..errors import LeaseLost
from .models import RateSlot, Step, Worker

__all__ = ["NOTIFY_CHANNEL", "LeaseQueries"]

#: the PostgreSQL notification channel that announces new work
NOTIFY_CHANNEL = "breach_work"
WORKERS = cast(Table, Worker.__table__)
RATE_SLOTS = cast(Table, RateSlot.__table__)


class LeaseQueries:
    """The :class:`~orchestrator.ledger.Ledger` methods for workers, leases and pacing."""

    engine: Engine
    #: this process's worker id once it registered (``None``: not a worker, e.g. a CLI command)
    worker_id: str | None = None

    def transaction(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError  # pragma: no cover - provided by Ledger

    @property
    def is_postgres(self) -> bool:
        """Whether the ledger is PostgreSQL (shared pacing, COPY, LISTEN/NOTIFY)."""
        return self.engine.dialect.name == "postgresql"

    # -- the registry ---------------------------------------------------------------------------

    def register_worker(
        self, worker_id: str, *, host: str, pid: int, kind: str, timeout: float
    ) -> None:
        """Record this process as a worker, alive for ``timeout`` seconds unless it beats
        again; from now on the fan-outs it writes are fenced by their lease."""
        current = _now()
        with self.transaction() as connection:
            connection.execute(insert(Worker).values(
                id=worker_id, host=host[:255], pid=pid, kind=kind[:16], started_at=current,
                heartbeat_at=current, alive_until=current + timedelta(seconds=timeout),
                stopped_at=None))  # fmt: skip
        self.worker_id = worker_id

    def heartbeat(self, worker_id: str, timeout: float) -> None:
        """Say the worker is alive for ``timeout`` seconds more."""
        current = _now()
        with self.transaction() as connection:
            alive = current + timedelta(seconds=timeout)
            connection.execute(
                update(Worker)
                .where(Worker.id == worker_id)
                .values(heartbeat_at=current, alive_until=alive)
            )

    def stop_worker(self, worker_id: str) -> None:
        """The worker stopped cleanly: what it held may be taken over at once."""
        with self.transaction() as connection:
            connection.execute(
                update(Worker).where(Worker.id == worker_id).values(stopped_at=_now())
            )

    def live_workers(self) -> list[dict[str, Any]]:
        """Workers alive now (their heartbeat is younger than their timeout, and they did not
        stop), oldest first: id, host, pid, kind, started_at, heartbeat_at, alive_until."""
        table = WORKERS
        with self.transaction() as connection:
            rows = connection.execute(
                select(table).where(table.c.alive_until >= _now(), table.c.stopped_at.is_(None))
                .order_by(table.c.started_at))  # fmt: skip
            return [dict(row._mapping) for row in rows]

    def forget_workers(self, older_than: float) -> int:
        """Delete the rows of workers dead for more than ``older_than`` seconds."""
        cutoff = _now() - timedelta(seconds=older_than)
        with self.transaction() as connection:
            gone = WORKERS.delete().where(WORKERS.c.alive_until < cutoff)
            return int(connection.execute(gone).rowcount)

    # -- the fan-out lease ----------------------------------------------------------------------

    def take_fanout(self, incident_id: str, step_id: str) -> bool:
        """Hold the step's fan-out for this worker: free, already ours, or its owner is dead
        (its heartbeat older than its timeout, or stopped). False: a live worker holds it.

        A process that is not a registered worker may fan out only a step nobody holds (a dead
        holder's claim is cleared); its batches are fenced the same way."""
        me = self.worker_id
        owner_alive = exists().where(
            Worker.id == Step.fanout_owner, Worker.alive_until >= _now(),
            Worker.stopped_at.is_(None))  # fmt: skip
        with self.transaction() as connection:
            taken = connection.execute(
                update(Step)
                .where(Step.incident_id == incident_id, Step.step_id == step_id,
                       or_(Step.fanout_owner.is_(None), Step.fanout_owner == me, ~owner_alive))
                .values(fanout_owner=me)
            ).rowcount  # fmt: skip
        return bool(taken)

    def _fence(self, connection: Connection, step: tuple[str, str], values: dict[str, Any]) -> None:
        """Write a fan-out's progress if this process still holds the step (the update locks
        the step row until commit, so the batch and the lease check are one); otherwise
        :class:`LeaseLost` rolls the batch back."""
        incident_id, step_id = step
        # Nobody's step (a dry run fanned out at trigger time, in whichever process) or ours.
        mine: ColumnElement[bool] = Step.fanout_owner.is_(None)
        if self.worker_id is not None:
            mine = or_(mine, Step.fanout_owner == self.worker_id)
        where = (Step.incident_id == incident_id, Step.step_id == step_id)
        if connection.execute(update(Step).where(*where, mine).values(**values)).rowcount:
            return
        holder = connection.execute(select(Step.fanout_owner).where(*where)).first()
        if holder is not None:  # no row at all: a fallback's pseudo-step, nothing to fence
            raise LeaseLost(
                f"the fan-out of {incident_id}/{step_id} is held by worker {holder[0]}: this "
                "worker was taken for dead and stops it (its last batch was not recorded)"
            )

    # -- shared pacing --------------------------------------------------------------------------

    def reserve_pace(self, notifier: str, seconds: float) -> tuple[float, float]:
        """Reserve ``seconds`` of ``notifier``'s sending time for this worker; returns when the
        reservation starts and when it was made, in seconds since the epoch on the database's
        clock. All workers reserve from the same row, so their reservations never overlap."""
        with self.transaction() as connection:
            for _ in range(2):
                if self.is_postgres:
                    got = connection.execute(text(
                        "WITH c AS (SELECT extract(epoch FROM clock_timestamp())::float8 AS t) "
                        "UPDATE rate_slots SET next_start = GREATEST(rate_slots.next_start, c.t)"
                        " + :cost FROM c WHERE rate_slots.notifier = :name "
                        "RETURNING rate_slots.next_start - :cost, c.t"
                    ), {"cost": seconds, "name": notifier}).first()  # fmt: skip
                else:
                    clock = time.time()
                    got = connection.execute(text(
                        "UPDATE rate_slots SET next_start = max(next_start, :t) + :cost "
                        "WHERE notifier = :name RETURNING next_start - :cost, :t"
                    ), {"cost": seconds, "name": notifier, "t": clock}).first()  # fmt: skip
                if got is not None:
                    return float(got[0]), float(got[1])
                dialect = postgresql_insert if self.is_postgres else sqlite_insert
                connection.execute(
                    dialect(RATE_SLOTS)
                    .values(notifier=notifier, next_start=0.0)
                    .on_conflict_do_nothing()
                )
        raise AssertionError("rate slot row vanished")  # pragma: no cover

    # -- wake-ups -------------------------------------------------------------------------------

    def _announce(self, connection: Connection, what: str) -> None:
        """Tell idle workers there is new work when the transaction commits: other processes
        by NOTIFY (PostgreSQL, coalesced with the same announcement in it), this process's
        :attr:`listeners` after the commit (see ``Ledger.transaction``)."""
        if self.is_postgres:
            connection.execute(select(func.pg_notify(NOTIFY_CHANNEL, what)))
        self._unsaid().add(what)

    def _unsaid(self) -> set[str]:
        raise NotImplementedError  # pragma: no cover - provided by Ledger


def _now() -> datetime:
    return datetime.now(UTC)
