"""One message per address: the fan-out's time and peak memory with and without dedupe.

    python benchmarks/bench_sharing.py --rows 100000 1000000 [--db URL]

The audience: ``rows`` people in households of about three sharing one phone number, the
members of a household spread through the audience (so most sharers meet their holder in an
earlier batch, found in the ledger, not in the batch itself). Each run is a fresh process that
triggers a live SMS step and fans it out (nothing is sent); its own peak RSS is read from
getrusage in the child. Flat memory means the 1,000,000-people run peaks close to the
100,000-people one: the addresses seen are never held in memory, only each batch's.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PLAYBOOK = """\
id: households
title: Households
version: 1
severity: high
organisation: {name: Example Org, contact_email: privacy@example.org}
notice:
  en:
    what_happened: On 1 December someone copied our customer table.
    impact: Your e-mail address was exposed.
    measures: We fixed the bug.
    advice: Watch out for phishing.
    contact: privacy@example.org
steps:
  - {id: sms-all, channel: sms, at: +0m, dedupe: DEDUPE}
"""
CHILD = """
import json, resource, sys, time
from orchestrator.campaign import Campaign
from orchestrator.ledger import now
from orchestrator.session import Breach
from orchestrator.simulator.cli import plugin_settings
from orchestrator.simulator.config import SimulatorConfig

db, playbook, people = sys.argv[1:4]
settings = plugin_settings("http://127.0.0.1:9", SimulatorConfig())  # nothing is sent
with Breach(db, settings=settings) as breach:
    incident = breach.trigger(playbook, audience=people, mode="live").incident_id
    campaign = Campaign(breach, breach.ledger.incident(incident))
    started = time.perf_counter()
    outcome = campaign.run_step(campaign.playbook.steps[0], now())
    seconds = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "rss_kb": peak, "states": dict(outcome.tally.states)}))
"""


def audience(rows: int, cache: Path) -> Path:
    """Households of about three on one number, members spread through the audience."""
    path = cache / f"households-{rows}.csv"
    if path.exists():
        return path
    households = max(1, rows // 3)
    with path.open("w", encoding="utf-8") as handle:
        handle.write("id,name,phone,region\n")
        for i in range(rows):
            home = (i * 7919) % households  # 7919 is prime: members land far apart
            handle.write(f"p{i},Person {i},+1415{5550100 + home},US\n")
    return path


def run(db: str, playbook: Path, people: Path) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", CHILD, db, str(playbook), str(people)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--db", help="a PostgreSQL URL (emptied first); default a SQLite file")
    parser.add_argument("--cache", type=Path, default=ROOT / "benchmarks" / "out")
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    print(f"{'people':>10}{'dedupe':>9}{'messages':>11}{'skipped':>10}{'seconds':>9}"
          f"{'rows/s':>9}{'peak RSS MB':>13}")  # fmt: skip
    for rows in args.rows:
        people = audience(rows, args.cache)
        for dedupe in ("none", "address"):
            with tempfile.TemporaryDirectory(dir=args.cache) as tmp:
                playbook = Path(tmp) / "households.yaml"
                playbook.write_text(PLAYBOOK.replace("DEDUPE", dedupe), encoding="utf-8")
                db = args.db or f"sqlite:///{Path(tmp) / 'ledger.db'}"
                if args.db:
                    from sqlalchemy import create_engine, text

                    engine = create_engine(args.db)
                    with engine.begin() as c:
                        c.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
                    engine.dispose()
                r = run(db, playbook, people)
            states, seconds = r["states"], r["seconds"]
            print(f"{rows:>10,}{dedupe:>9}{states.get('pending', 0):>11,}"
                  f"{states.get('skipped', 0):>10,}{seconds:>9.1f}{rows / seconds:>9,.0f}"
                  f"{r['rss_kb'] / 1024:>13.1f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
