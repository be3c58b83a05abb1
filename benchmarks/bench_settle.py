"""What settling costs the ledger, and how much of it is the audit evidence of each batch.

    python benchmarks/bench_settle.py --rows 20000 --batch 100

Writes ``--rows`` pending deliveries of one live incident to a fresh SQLite ledger, then
claims and settles them as ``sent`` in batches of ``--batch``, timing only the settles. The run
is repeated with the evidence (one chained ``deliveries.settled`` audit row per batch) switched
off, so the difference is what the evidence costs per batch.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator.ledger import Incident, Ledger


def settle_all(url: str, rows: int, batch: int) -> tuple[float, int]:
    """Seconds spent in ``Ledger.settle`` for every row, and the batches settled."""
    ledger = Ledger(url)
    now = datetime.now(UTC)
    incident = Incident(id="bench", playbook_id="bench", playbook_version="1", playbook_text="",
                        playbook_digest="-", title="bench", severity="high", mode="live",
                        aware_at=now, created_at=now, facts={}, audience_spec="-",
                        audience_options={})  # fmt: skip
    ledger.add_incident(incident, [], [])
    for start in range(0, rows, 10_000):
        ledger.insert_deliveries([
            {"key": f"bench:sms:{i}", "incident_id": "bench", "step_id": "sms",
             "recipient_id": str(i), "channel": "sms", "notifier": "bench", "state": "pending",
             "next_attempt_at": now, "created_at": now, "updated_at": now}
            for i in range(start, min(rows, start + 10_000))
        ])  # fmt: skip
    spent, batches = 0.0, 0
    while claimed := ledger.claim("bench", batch, 60.0):
        outcomes = [{"key": r["key"], "state": "sent", "provider_message_id": f"p-{r['id']}",
                     "sent_at": now} for r in claimed]  # fmt: skip
        started = time.perf_counter()
        ledger.settle(outcomes)
        spent += time.perf_counter() - started
        batches += 1
    ledger.close()
    return spent, batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    evidence: Callable[..., Any] = Ledger._evidence
    print(f"{'evidence':<10}{'rows':>9}{'batches':>9}{'seconds':>9}{'ms/batch':>10}")
    for on in (True, False):
        Ledger._evidence = evidence if on else (lambda *a, **k: None)  # type: ignore[method-assign]
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{Path(tmp) / 'ledger.db'}"
            seconds, batches = settle_all(url, args.rows, args.batch)
        print(f"{'on' if on else 'off':<10}{args.rows:>9,}{batches:>9,}{seconds:>9.2f}"
              f"{1000 * seconds / max(batches, 1):>10.2f}")  # fmt: skip
    Ledger._evidence = evidence  # type: ignore[method-assign]


if __name__ == "__main__":
    main()
