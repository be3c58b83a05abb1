"""The audit trail's hash chain: each row of an incident carries the SHA-256 of the row before
it and its own, so an edited, deleted or inserted row breaks the chain from that row on.

A row's hash covers its incident, time, kind, step, actor and detail, in a canonical JSON form
(sorted keys, no spaces, times in UTC with microseconds), after the previous row's hash. The
first row of an incident follows :data:`GENESIS`. Removing the newest rows leaves a shorter
chain that still verifies: the chain head exported with the evidence is what shows that.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

#: what the first row of an incident's chain follows
GENESIS = "0" * 64


def canonical(
    incident_id: str,
    at: datetime,
    kind: str,
    step_id: str | None,
    actor: str,
    detail: Mapping[str, Any],
) -> bytes:
    """The bytes a row's hash covers."""
    content = {
        "incident": incident_id, "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
        "kind": kind, "step": step_id, "actor": actor, "detail": detail,
    }  # fmt: skip
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8")


def row_hash(previous: str, content: bytes) -> str:
    """SHA-256 over the previous row's hash and this row's canonical content."""
    return hashlib.sha256(previous.encode("ascii") + b"\n" + content).hexdigest()


def jsonable_detail(detail: Mapping[str, Any]) -> dict[str, Any]:
    """A detail as the JSON column gives it back (tuples as lists, other values as text), so
    the hash computed on writing is the hash recomputed on reading."""
    loaded: dict[str, Any] = json.loads(json.dumps(dict(detail), default=str))
    return loaded


class ChainedRow(Protocol):
    """What verification reads of an audit row."""

    id: int
    incident_id: str
    at: datetime
    kind: str
    step_id: str | None
    actor: str
    detail: dict[str, Any]
    prev_hash: str | None
    hash: str | None


@dataclass(frozen=True)
class ChainReport:
    """The outcome of walking an incident's chain: how many rows held, the head (the last
    row's hash), and the first row that breaks it with why (None: intact).

    ``batches`` and ``deliveries`` count the settle and receipt batches whose digests were
    recomputed from the deliveries table, and the deliveries they cover. ``deliveries_changed``
    says the chain itself holds but the deliveries of batch ``broken_row`` were changed after it
    settled them.
    """

    incident_id: str
    rows: int
    head: str
    broken_row: int | None = None
    broken_kind: str | None = None
    reason: str | None = None
    batches: int = 0
    deliveries: int = 0
    deliveries_changed: bool = False

    @property
    def intact(self) -> bool:
        """True when every row verifies, and every batch's deliveries match its digest."""
        return self.broken_row is None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"incident": self.incident_id, "intact": self.intact, "rows": self.rows,
                "head": self.head, "broken_row": self.broken_row,
                "broken_kind": self.broken_kind, "reason": self.reason,
                "batches": self.batches, "deliveries": self.deliveries,
                "deliveries_changed": self.deliveries_changed}  # fmt: skip


def verify(incident_id: str, rows: Iterable[ChainedRow]) -> ChainReport:
    """Walk ``rows`` (one incident's, oldest first) and report the first that breaks the chain."""
    expected, count = GENESIS, 0
    for row in rows:
        if row.prev_hash != expected:
            why = ("it does not follow the row before it: a row was removed or inserted"
                   if row.prev_hash else "it carries no hash")  # fmt: skip
            return ChainReport(incident_id, count, expected, row.id, row.kind, why)
        content = canonical(row.incident_id, row.at, row.kind, row.step_id, row.actor, row.detail)
        if row_hash(expected, content) != row.hash:
            why = "its content does not match its hash: it was edited after it was written"
            return ChainReport(incident_id, count, expected, row.id, row.kind, why)
        expected, count = row.hash, count + 1
    return ChainReport(incident_id, count, expected)
