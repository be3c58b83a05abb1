"""End-to-end delivery throughput of the engine, and its peak memory.

    python benchmarks/bench_engine.py --rows 100000

For each notifier — `null-sms` (no I/O: the engine's own cost) and `standin-sms` (real HTTP to
the provider simulator on 127.0.0.1) — a fresh process triggers a live incident over the same
audience and runs the engine until idle. Throughput is people per second from trigger to the
last delivery settled; the ratio between the two rows is what the provider round trips cost.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTIFIERS = ROOT / "tests" / "notifiers"
CHILD = """
import json, os, resource, sys, time
from pathlib import Path
from orchestrator.session import Breach
from orchestrator.dispatch import DispatchSettings
from orchestrator.pluginhost import PluginHost
playbook, audience, db, notifier = sys.argv[1:5]
host = PluginHost(plugins_dir=Path(os.environ["BENCH_NOTIFIERS"]))
text = Path(playbook).read_text().replace("notifier: standin-sms", f"notifier: {notifier}")
pb = Path(db.split("///")[1]).with_suffix(".yaml"); pb.write_text(text)
start = time.perf_counter()
breach = Breach(db, host=host)
incident = breach.trigger(pb, audience=audience, mode="live").incident_id
concurrency = int(os.environ.get("BENCH_CONCURRENCY", "8"))
breach.run(DispatchSettings(concurrency=concurrency), until_idle=True)
seconds = time.perf_counter() - start
status = breach.status(incident)
print(json.dumps({"seconds": seconds, "sent": status["steps"][0]["deliveries"].get("sent", 0),
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "tests"))
    from engine_support import PLAYBOOK, phone_audience

    from orchestrator.simulator import Simulator

    with tempfile.TemporaryDirectory() as tmp, Simulator() as sim:
        audience = phone_audience(Path(tmp) / "people.csv", args.rows)
        print(f"{'notifier':<14}{'people':>10}{'seconds':>9}{'people/s':>10}{'peak RSS MB':>13}")
        results = {}
        for notifier in ("null-sms", "standin-sms"):
            db = f"sqlite:///{Path(tmp) / (notifier + '.db')}"
            env = {
                "BENCH_NOTIFIERS": str(NOTIFIERS),
                "STANDIN_URL": sim.url,
                "STANDIN_RATE": "1000000",
                "STANDIN_MAX_BATCH": "100",
                "BENCH_CONCURRENCY": str(args.concurrency),
                "PATH": "/usr/bin:/bin",
            }
            done = subprocess.run(
                [sys.executable, "-c", CHILD, str(PLAYBOOK), str(audience), db, notifier],
                capture_output=True, text=True, check=False, env=env,
            )  # fmt: skip
            if done.returncode != 0:
                raise SystemExit(done.stderr[-3000:])
            r = json.loads(done.stdout.strip().splitlines()[-1])
            results[notifier] = r
            assert r["sent"] == args.rows, r
            print(
                f"{notifier:<14}{args.rows:>10,}{r['seconds']:>9.1f}"
                f"{args.rows / r['seconds']:>10,.0f}{r['rss_mb']:>13.1f}",
                flush=True,
            )
        ratio = results["standin-sms"]["seconds"] / results["null-sms"]["seconds"]
        print(f"stand-in over null: {ratio:.2f}x the time")


if __name__ == "__main__":
    main()
