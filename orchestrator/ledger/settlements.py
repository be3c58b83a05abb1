"""Evidence of settled deliveries in the audit chain, one row per batch instead of per message.

Each settle (a batch of send outcomes) and each batch of receipts that changes deliveries'
states appends one audit row per incident, in the same transaction as the change. The row holds
the counts per new state, the delivery ids whose state became final (as runs of consecutive ids,
so a batch costs a few numbers, not a list of a thousand keys) and a SHA-256 over the sorted
``(delivery key, new state, provider message id)`` of those deliveries. The row is chained like
every other (``chain.py``), so the digests cannot be changed unnoticed, and
:func:`check_batches` recomputes them from the deliveries table: a delivery edited after it
settled names the batch that settled it.

A delivery's final state is written by at most one settle (only a ``sending`` row settles, and a
final one is never claimed again) and changed afterwards only by one receipt (``sent`` becomes
``delivered`` or ``failed``, keeping its provider message id). So a settle batch whose rows a
receipt batch later changed is checked with those rows as ``sent``, and the receipt batch with
their current state. Retries (back to ``pending``) are counted but not digested: the delivery is
evidenced when it settles for good.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

#: the audit row of one settle batch, and of one batch of state-changing receipts
SETTLED = "deliveries.settled"
RECEIPTED = "deliveries.receipted"
KINDS = (SETTLED, RECEIPTED)
#: states a delivery keeps once settled (a receipt may still turn ``sent`` into another)
FINAL = ("sent", "delivered", "failed", "dead")


class Settled(NamedTuple):
    """One delivery as a batch changed it: what the digest covers, and where it belongs.

    A named tuple: a settle builds one per delivery it changed, straight from a result row."""

    id: int
    incident_id: str
    step_id: str
    key: str
    state: str
    provider_message_id: str | None


def digest(rows: Iterable[tuple[str, str, str | None]]) -> str:
    """SHA-256 over the sorted ``(key, state, provider message id)`` tuples, written as one
    canonical JSON array of ``[key, state, id]`` arrays (so no value can run into the next)."""
    ordered = sorted(rows, key=lambda r: (r[0], r[1], r[2] or ""))
    text = json.dumps(ordered, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def runs(ids: Iterable[int]) -> list[list[int]]:
    """Sorted ids as ``[first, last]`` runs of consecutive ids: ``[3, 4, 5, 9]`` -> ``[[3, 5],
    [9, 9]]``. A batch claimed in id order is one or a few runs."""
    out: list[list[int]] = []
    for i in sorted(set(ids)):
        if out and out[-1][1] == i - 1:
            out[-1][1] = i
        else:
            out.append([i, i])
    return out


def expand(spans: Sequence[Sequence[int]]) -> list[int]:
    """The ids of :func:`runs`' output."""
    return [i for first, last in spans for i in range(int(first), int(last) + 1)]


def details(rows: Sequence[Settled], source: str) -> dict[str, dict[str, Any]]:
    """incident -> the detail of its audit row for one batch (``source``: settle or receipt)."""
    by_incident: dict[str, list[Settled]] = {}
    for row in rows:
        by_incident.setdefault(row.incident_id, []).append(row)
    out: dict[str, dict[str, Any]] = {}
    for incident_id, mine in by_incident.items():
        final = [r for r in mine if r.state in FINAL]
        out[incident_id] = {
            "source": source,
            "outcomes": dict(sorted(Counter(r.state for r in mine).items())),
            "steps": sorted({r.step_id for r in mine}),
            "deliveries": len(final),
            "ids": runs(r.id for r in final),
            "sha256": digest((r.key, r.state, r.provider_message_id) for r in final),
        }
    return out


@dataclass(frozen=True)
class BatchProblem:
    """The first batch whose deliveries no longer match its digest."""

    row: int
    kind: str
    reason: str


@dataclass(frozen=True)
class BatchCheck:
    """How many batches and deliveries were checked, and the first that failed (None: all held)."""

    batches: int
    deliveries: int
    problem: BatchProblem | None = None


#: reads deliveries by id: ids -> {id: (key, state, provider message id)}
Reader = Callable[[Sequence[int]], Mapping[int, tuple[str, str, str | None]]]


def check_batches(batches: Iterable[Any], read: Reader) -> BatchCheck:
    """Recompute every batch's digest from the deliveries ``read`` returns.

    ``batches`` are the incident's settlement audit rows, oldest first (``id``, ``kind``,
    ``detail``). A delivery a later receipt batch changed is taken as ``sent`` in the settle
    batch before it (see the module's docstring).
    """
    rows = list(batches)
    receipted = {i for b in rows if b.kind == RECEIPTED for i in expand(b.detail.get("ids", []))}
    count = checked = 0
    for batch in rows:
        ids = expand(batch.detail.get("ids", []))
        found = read(ids)
        if len(found) != len(ids):
            gone = len(ids) - len(found)
            why = f"{gone:,} of the {len(ids):,} deliveries it settled are gone from the ledger"
            return BatchCheck(count, checked, BatchProblem(batch.id, batch.kind, why))
        tuples = [
            (key, "sent" if batch.kind == SETTLED and i in receipted else state, pid)
            for i, (key, state, pid) in found.items()
        ]
        if digest(tuples) != batch.detail.get("sha256"):
            why = (f"the {len(ids):,} deliveries it settled no longer match its SHA-256: one "
                   "was changed after it settled")  # fmt: skip
            return BatchCheck(count, checked, BatchProblem(batch.id, batch.kind, why))
        count, checked = count + 1, checked + len(ids)
    return BatchCheck(count, checked)


def grouped_timeline(events: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The timeline as the table shows it: each event, except that a run of consecutive
    settlement rows of one kind becomes one line (``batches``, summed ``outcomes``, the first
    and last audit row, ``at`` and ``until``)."""
    lines: list[dict[str, Any]] = []
    for e in events:
        if e["kind"] not in KINDS:
            lines.append(dict(e))
            continue
        outcomes: dict[str, int] = e["detail"].get("outcomes", {})
        last = lines[-1] if lines else None
        if last is not None and last.get("batches") and last["kind"] == e["kind"]:
            for state, n in outcomes.items():
                last["outcomes"][state] = last["outcomes"].get(state, 0) + int(n)
            last["outcomes"] = dict(sorted(last["outcomes"].items()))
            last["batches"] += 1
            last["until"] = e["at"]
            last["rows"] = f"{last['first']}-{e['row']}"
            if last["step"] != e["step"]:
                last["step"] = None
            continue
        lines.append({**e, "batches": 1, "outcomes": dict(sorted(outcomes.items())),
                      "until": e["at"], "first": e["row"], "rows": str(e["row"])})  # fmt: skip
    return lines
