"""Fan-out rows into a PostgreSQL ledger: COPY (what the ledger does) against executemany.

    python benchmarks/bench_insert.py --db postgresql+psycopg://USER:PASS@HOST/DB --rows 50000

The database's public schema is dropped and made anew. Rows go in batches of 5,000 (a fan-out
batch), each in its own transaction with the step's progress, as ``Ledger.insert_deliveries``
writes them; the executemany figure is the same rows through SQLAlchemy's insert.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import create_engine, insert, text

from orchestrator.ledger import _DELIVERY_DEFAULTS, Incident, Ledger, Step
from orchestrator.ledger.bulk import DELIVERIES

BATCH = 5000


def rows(incident: str, step: str, start: int, count: int) -> list[dict[str, Any]]:
    stamp = datetime.now(UTC)
    full = _DELIVERY_DEFAULTS  # the defaults every fan-out row carries
    return [{**full, "key": f"{incident}:{step}:p{i}", "incident_id": incident, "step_id": step,
             "recipient_id": f"p{i}", "recipient_row": i + 1, "channel": "sms",
             "notifier": "twilio-sms", "contact": "+14155550100", "state": "pending",
             "locale": "en", "content_hash": "0" * 64, "next_attempt_at": stamp,
             "created_at": stamp, "updated_at": stamp}
            for i in range(start, start + count)]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--rows", type=int, default=50_000)
    args = parser.parse_args()
    engine = create_engine(args.db)
    with engine.begin() as c:
        c.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    ledger = Ledger(args.db)
    now = datetime.now(UTC)
    incident = Incident(id="bench", playbook_id="p", playbook_version="1", playbook_text="",
                        playbook_digest="", title="t", severity="high", mode="live",
                        aware_at=now, created_at=now, facts={}, audience_spec="x",
                        audience_options={})  # fmt: skip
    steps = [Step(incident_id="bench", step_id=s, position=i, channel="sms", due_at=now)
             for i, s in enumerate(("copy", "many"))]  # fmt: skip
    ledger.add_incident(incident, steps)
    results = {}
    for step in ("copy", "many"):
        started = time.perf_counter()
        for start in range(0, args.rows, BATCH):
            batch = rows("bench", step, start, min(BATCH, args.rows - start))
            progress = ("bench", step, start + len(batch), False)
            if step == "copy":
                ledger.insert_deliveries(batch, progress=progress)
            else:
                with ledger.transaction() as connection:
                    ledger._progress(connection, progress)
                    connection.execute(insert(DELIVERIES), batch)
        results[step] = args.rows / (time.perf_counter() - started)
    print(
        f"{args.rows:,} rows: COPY {results['copy']:,.0f} rows/s, "
        f"executemany {results['many']:,.0f} rows/s"
    )


if __name__ == "__main__":
    main()
