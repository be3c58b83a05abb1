"""Provider receipts (delivered) applied to sent deliveries: the ledger's time per receipt.

    python benchmarks/bench_receipts.py [--people 20000] [--batch 1000] [--postgres URL]

One live SMS step of ``--people`` is planned, claimed and settled as sent (each message its own
provider id, as Twilio's), then ``Ledger.apply_receipts`` takes the receipts in batches of
``--batch`` (a webhook's worth), each naming its message by provider id and delivery key, as
the receipt handlers do. It prints the wall time per receipt of each ledger, the median batch.
Receipts arrive while a campaign sends: on SQLite every batch holds the one writer meanwhile.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_pipeline import _postgres_fresh, one_step  # noqa: E402


def per_receipt(db: str, people: int, batch: int) -> float:
    """Median seconds per receipt over the batches of one run on ``db``."""
    from orchestrator.campaign import Campaign
    from orchestrator.ledger import now
    from orchestrator.receipts import ReceiptOutcome, ReceiptUpdate

    with tempfile.TemporaryDirectory() as work:
        breach, playbook, listed, _settings = one_step("http://127.0.0.1:9", "sms", people, db,
                                                       work)  # fmt: skip
        incident = breach.trigger(playbook, audience=str(listed), mode="live").incident_id
        campaign = Campaign(breach, breach.ledger.incident(incident))
        campaign.run_step(campaign.playbook.steps[0], now())
        ledger = breach.ledger
        sent: list[tuple[str, str]] = []  # (delivery key, provider id)
        while rows := ledger.claim("twilio-sms", 1000, 600):
            batch_sent = [(r["key"], f"SM{r['id']:032x}") for r in rows]
            ledger.settle([{"key": key, "state": "sent", "sent_at": now(),
                            "provider_message_id": pid} for key, pid in batch_sent])  # fmt: skip
            sent += batch_sent
        times = []
        for start in range(0, len(sent), batch):
            updates = [ReceiptUpdate(ReceiptOutcome.DELIVERED, delivery_key=key, provider_id=pid)
                       for key, pid in sent[start : start + batch]]  # fmt: skip
            started = time.perf_counter()
            ledger.apply_receipts(updates)
            times.append((time.perf_counter() - started) / len(updates))
        breach.close()
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--people", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1_000, help="receipts a call")
    parser.add_argument("--postgres", metavar="URL", help="also run on this PostgreSQL ledger")
    args = parser.parse_args()
    lines = [f"{args.people:,} sent SMS, receipts in batches of {args.batch:,}",
             f"{'ledger':<10}{'µs per receipt':>16}"]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        ledgers = [("sqlite", f"sqlite:///{Path(tmp) / 'ledger.db'}")]
        if args.postgres:
            ledgers.append(("postgres", _postgres_fresh(args.postgres)))
        for name, db in ledgers:
            lines.append(f"{name:<10}{per_receipt(db, args.people, args.batch) * 1e6:>16.0f}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
