"""Where an e-mail recipient's CPU time goes, piece by piece, and what the database alone costs.

    python benchmarks/bench_email_parts.py [--people 50000] [--repeat 3]

One SQLite ledger, one process (a child of this one), no HTTP: the pieces of the e-mail
pipeline run one after the other, each timed on its own thread's CPU clock, with the engine's
collector tuning (``tune_collector``):

* **fan-out**: ``Campaign.run_step`` plans the people into the ledger (audience, checks,
  content hashes, one row each);
* **claim**: ``Ledger.claim`` of 1,000 rows at a time, as dispatch takes them;
* **rebuild**: ``Campaign.message_for`` of every claimed row;
* **body**: ``sendgrid-email``'s ``build_batch_payload``, the request bodies of 1,000
  personalizations;
* **settle**: ``Ledger.settle`` of the batch as sent, with its audit evidence.

Beside them, **bare sqlite3** writes the same rows into a fresh ledger of the same schema with
the driver alone: one ``executemany`` insert a batch, the claim's ``UPDATE ... RETURNING`` and one
``UPDATE`` of the batch as sent. That is the floor of keeping one durable row a person, which
moves through two states and four indexes, however little Python is around it.

Not measured here: the event loop, the HTTP request (``bench_pipeline.py`` has the whole run).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_pipeline import answer_as_child, one_step, run_child  # noqa: E402

CHUNK = 1_000
PIECES = ("fan-out", "claim", "rebuild", "body", "settle")
#: what bare sqlite3 does for the pieces it has
FLOOR = {"fan-out": "insert", "claim": "claim", "settle": "settle"}
#: the columns a fan-out writes (the bare insert writes them back as read)
PLANNED = ("key", "incident_id", "step_id", "recipient_id", "recipient_row", "channel",
           "notifier", "locale", "contact", "recipient_data", "state", "attempts",
           "next_attempt_at", "reclaims", "via_fallback", "created_at", "updated_at",
           "content_hash", "address_key")  # fmt: skip


def child(people: int, work: str) -> dict[str, float]:
    """One run: the pipeline's pieces, then bare sqlite3; µs of CPU per recipient for each."""
    from orchestrator.campaign import Campaign
    from orchestrator.collector import tune_collector
    from orchestrator.ledger import now

    folder = Path(work)
    path = folder / "pieces.db"
    breach, playbook, listed, _settings = one_step("http://127.0.0.1:9", "email", people,
                                                   f"sqlite:///{path}", work)  # fmt: skip
    incident = breach.trigger(playbook, audience=str(listed), mode="live").incident_id
    campaign = Campaign(breach, breach.ledger.incident(incident))
    notifier: Any = breach.host.notifier("email", "sendgrid-email")  # its batch bodies
    release = tune_collector()
    spent = dict.fromkeys(PIECES, 0.0)

    def timed(piece: str, work: Callable[[], Any]) -> Any:
        started = time.thread_time()
        try:
            return work()
        finally:
            spent[piece] += time.thread_time() - started

    timed("fan-out", lambda: campaign.run_step(campaign.playbook.steps[0], now()))
    ledger = breach.ledger
    while rows := timed("claim", lambda: ledger.claim("sendgrid-email", CHUNK, 600)):
        messages = timed("rebuild", lambda: [campaign.message_for(r) for r in rows])
        timed("body", lambda: notifier.build_batch_payload(messages))  # noqa: B023
        sent_at = now()
        outcomes = [
            {"key": r["key"], "state": "sent", "provider_message_id": "Xm1dB2f4QhK",
             "error": None, "uncertain": False, "sent_at": sent_at}
            for r in rows
        ]  # fmt: skip
        timed("settle", lambda: ledger.settle(outcomes))  # noqa: B023
    release()
    # the rows as the fan-out wrote them, before they were sent
    as_planned = {"state": "'pending'", "attempts": "0", "next_attempt_at": "created_at"}
    columns = ", ".join(as_planned.get(c, c) for c in PLANNED)
    with sqlite3.connect(path) as db:
        planned = db.execute(f"SELECT {columns} FROM deliveries").fetchall()
    breach.close()
    floor = bare(folder / "bare.db", planned)
    return {**{p: s / people * 1e6 for p, s in spent.items()},
            **{f"bare {p}": s / people * 1e6 for p, s in floor.items()}}  # fmt: skip


def bare(path: Path, planned: Sequence[tuple[Any, ...]]) -> dict[str, float]:
    """The same rows through the driver alone, in the ledger's schema (made by ``Ledger``)."""
    from orchestrator.ledger import Ledger, now

    Ledger(f"sqlite:///{path}").close()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA foreign_keys=OFF")  # the incident row is not copied
    insert = (f"INSERT INTO deliveries ({', '.join(PLANNED)}) "
              f"VALUES ({', '.join('?' * len(PLANNED))})")  # fmt: skip
    claim = ("UPDATE deliveries SET state = 'sending', lease_until = ?1, attempts = attempts + 1,"
             " updated_at = ?1 WHERE id IN (SELECT id FROM deliveries WHERE notifier = ?2 AND"
             " state = 'pending' AND next_attempt_at <= ?1 ORDER BY next_attempt_at, id LIMIT ?3)"
             " RETURNING id, key, incident_id, step_id, recipient_id, recipient_row, channel,"
             " notifier, locale, contact, recipient_data, attempts, reclaims, lease_until"
             )  # fmt: skip
    settle = ("UPDATE deliveries SET state = 'sent', provider_message_id = ?1, sent_at = ?2,"
              " updated_at = ?2, lease_until = NULL WHERE key IN (SELECT value FROM json_each(?3))"
              " AND state = 'sending'")  # fmt: skip
    spent = {"insert": 0.0, "claim": 0.0, "settle": 0.0}

    def write(piece: str, statement: str, params: Any, many: bool = False) -> list[Any]:
        started = time.thread_time()
        db.execute("BEGIN")
        if many:
            db.executemany(statement, params)
            got = []
        else:
            got = db.execute(statement, params).fetchall()
        db.execute("COMMIT")
        spent[piece] += time.thread_time() - started
        return got

    for start in range(0, len(planned), CHUNK):
        write("insert", insert, planned[start : start + CHUNK], many=True)
    # the ledger's own text form of a time; a day on, so every row is due and no lease expired
    later = (now().replace(tzinfo=None) + timedelta(days=1)).isoformat(" ")
    while rows := write("claim", claim, (later, "sendgrid-email", CHUNK)):
        keys = json.dumps([row[1] for row in rows])
        write("settle", settle, ("Xm1dB2f4QhK", later, keys))
    db.close()
    return spent


def main() -> None:
    if answer_as_child(child):
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--people", type=int, default=50_000, help="e-mail recipients")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="run N times and show the median of each figure")  # fmt: skip
    args = parser.parse_args()
    runs = []
    for i in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            what = f"e-mail pieces, run {i + 1}"
            runs.append(run_child(what, __file__, "--child", json.dumps([args.people, tmp])))
    got = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    head = f"{'piece':<10}{'pipeline':>10}{'bare sqlite3':>14}"
    lines = [f"{args.people:,} e-mail recipients on SQLite, CPU µs per recipient"
             f" (median of {args.repeat})", head, "-" * len(head)]  # fmt: skip
    for piece in PIECES:
        floor = got.get(f"bare {FLOOR[piece]}") if piece in FLOOR else None
        shown = f"{floor:>8.1f} {FLOOR[piece]}" if floor is not None else f"{'-':>8}"
        lines.append(f"{piece:<10}{got[piece]:>10.1f}{shown:>14}".rstrip())
    total = sum(got[p] for p in PIECES)
    floor_total = sum(got[f"bare {p}"] for p in FLOOR.values())
    lines.append(f"{'sum':<10}{total:>10.1f}{floor_total:>8.1f}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
