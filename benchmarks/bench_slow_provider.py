"""E-mail through the real SendGrid plugin when the provider is slow to answer.

    python benchmarks/bench_slow_provider.py --people 30000 --latency 0 0.3 1.0

For each latency, a fresh child process starts the provider simulator with SendGrid answering
every request that many seconds late, triggers a one-step live e-mail incident and runs the
engine until idle (64 batches in flight, no rate limit). It prints e-mails per second, the
requests made and the largest number of them the simulator held at once: the requests in flight
are what a slow provider leaves to decide throughput.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHILD = """
import json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[4])
from factories import notice_yaml
from orchestrator.dispatch import DispatchSettings
from orchestrator.session import Breach
from orchestrator.simulator import Simulator
from orchestrator.simulator.cli import plugin_settings

people, latency, folder = int(sys.argv[1]), float(sys.argv[2]), Path(sys.argv[3])
playbook = folder / "mail.yaml"
playbook.write_text(
    "id: slow-provider\\ntitle: Slow provider\\nversion: 1\\nseverity: high\\n"
    "organisation: {name: Example Org, contact_email: privacy@example.org}\\n"
    + notice_yaml("en") + "steps:\\n  - {id: mail-all, channel: email, at: +0m}\\n")
audience = folder / "people.csv"
audience.write_text("id,email\\n" + "".join(f"p{i},p{i}@example.org\\n" for i in range(people)))
with Simulator() as simulator:
    simulator.configure("sendgrid", latency=latency)
    breach = Breach(f"sqlite:///{folder / 'ledger.db'}",
                    settings=plugin_settings(simulator.url, simulator.config))
    incident = breach.trigger(playbook, audience=str(audience), mode="live").incident_id
    start = time.perf_counter()
    breach.run(DispatchSettings(rates={"sendgrid-email": 10_000_000}, concurrency=64),
               until_idle=True)
    seconds = time.perf_counter() - start
    # a request is in flight from its arrival until its answer, latency seconds later
    arrived = sorted(r.received_monotonic for r in simulator.requests("sendgrid"))
    held = max((sum(1 for a in arrived if t <= a < t + latency) for t in arrived), default=0)
    print(json.dumps({"seconds": seconds, "requests": len(arrived), "held": held if latency else 1,
                      "sent": breach.status(incident)["steps"][0]["deliveries"].get("sent", 0)}))
"""


def measure(people: int, latency: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(people), str(latency), folder,
             str(ROOT / "tests")],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--people", type=int, default=30_000)
    parser.add_argument("--latency", type=float, nargs="+", default=[0.0, 0.3, 1.0],
                        help="seconds SendGrid takes to answer each request")  # fmt: skip
    args = parser.parse_args()
    print(f"{'latency':>8} {'people':>8} {'e-mails/s':>10} {'requests':>9} {'in flight':>10}")
    for latency in args.latency:
        got = measure(args.people, latency)
        rate = got["sent"] / got["seconds"]
        print(f"{latency:>7.1f}s {got['sent']:>8,} {rate:>10,.0f} {got['requests']:>9,} "
              f"{got['held']:>10,}")  # fmt: skip


if __name__ == "__main__":
    main()
