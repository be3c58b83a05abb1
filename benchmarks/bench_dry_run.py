"""Dry-run throughput and peak memory as the audience grows.

    python benchmarks/bench_dry_run.py --rows 100000 1000000 [--playbook playbooks/X.yaml]

Each run is a fresh `breach trigger --dry-run` process; its own peak RSS is read from
getrusage in the child, so runs do not contaminate each other. Flat memory means the peak RSS
of the large run stays close to the small one while the message count grows tenfold.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FACTS = {
    "credential-leak": ["affected_count=1"],
    "payment-data-exfiltration": ["affected_count=1", "cards_affected=1", "texans_affected=300"],
    "ransomware-unknown-scope": ["exfiltration_confirmed=true"],
    "processor-breach": ["processor_name=PayStream", "affected_count=1",
                         "processor_notified_at=2026-11-24T16:00:00Z"],
}  # fmt: skip
CHILD = """
import resource, sys
from orchestrator.commands import main
try:
    main(sys.argv[1:])
finally:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"PEAK_RSS_KB={peak}", file=sys.stderr)
"""


#: the parts every rendered notice must carry
REQUIRED = ("what_happened", "impact", "measures", "advice", "contact")


def audience(rows: int, cache: Path) -> Path:
    from orchestrator.synthetic import generate_audience

    path = cache / f"audience-{rows}.csv"
    if not path.exists():
        generate_audience(path, rows, seed=1)
    return path


def verify(outbox: Path, summary: dict[str, Any]) -> str:
    """Check the outbox as the dry-run promises it, streaming: one message per (person, step),
    every notice with its five required parts, per-step counts adding up to the audience."""
    people = summary["audience"]["people"]
    notices = {}
    with (outbox / "notices.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            n = json.loads(line)
            missing = [k for k in REQUIRED if not n[k].strip()]
            if missing:
                return f"notice {n['id']} lacks {missing}"
            notices[n["id"]] = True
    for step in summary["steps"]:
        rows = sum(step["states"].values()) if step["fired"] else people
        if step["channel"] not in ("announcement", "regulator") and rows != people:
            return f"step {step['step']}: {rows} rows != {people}"
    for channel in summary["channels"]:
        seen = set()
        with (outbox / f"{channel}.jsonl").open(encoding="utf-8") as handle:
            for line in handle:
                record = json.loads(line)
                key = (record["step"], record["recipient"])
                if key in seen or record["notice"] not in notices:
                    return f"{channel}: duplicate or orphan message {key}"
                seen.add(key)
    return "ok"


def run(playbook: Path, people: Path, work: Path, check: bool) -> dict[str, Any]:
    outbox = work / "outbox"
    args = ["trigger", str(playbook), "--audience", str(people), "--dry-run", "--outbox",
            str(outbox), "--db", f"sqlite:///{work / 'ledger.db'}", "--json"]  # fmt: skip
    for fact in FACTS.get(playbook.stem, []):
        args += ["--fact", fact]
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True,
                          check=False)  # fmt: skip
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    peak_kb = int(done.stderr.rsplit("PEAK_RSS_KB=", 1)[1].split()[0])
    summary = json.loads(done.stdout)
    messages = sum(c["messages"] for c in summary["channels"].values())
    size = sum(p.stat().st_size for p in outbox.rglob("*") if p.is_file())
    return {"seconds": seconds, "messages": messages, "rss_mb": peak_kb / 1024,
            "outbox_mb": size / 1e6,
            "check": verify(outbox, summary) if check else "-"}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--playbook", type=Path, action="append")
    parser.add_argument("--cache", type=Path, default=ROOT / "benchmarks" / "out")
    parser.add_argument("--all", action="store_true", help="every shipped playbook")
    parser.add_argument("--verify", action="store_true", help="check each outbox")
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    playbooks = args.playbook or [ROOT / "playbooks" / "credential-leak.yaml"]
    if args.all:
        playbooks = sorted((ROOT / "playbooks").glob("*.yaml"))
    print(f"{'playbook':<28}{'people':>10}{'messages':>11}{'seconds':>9}{'msg/s':>9}"
          f"{'peak RSS MB':>13}{'outbox MB':>11}  outbox check")  # fmt: skip
    for playbook in playbooks:
        for rows in args.rows:
            people = audience(rows, args.cache)
            with tempfile.TemporaryDirectory(dir=args.cache) as tmp:
                r = run(playbook, people, Path(tmp), args.verify)
            messages, seconds = float(r["messages"]), float(r["seconds"])
            print(f"{playbook.stem:<28}{rows:>10,}{int(messages):>11,}{seconds:>9.1f}"
                  f"{messages / seconds:>9,.0f}{r['rss_mb']:>13.1f}"
                  f"{r['outbox_mb']:>11.0f}  {r['check']}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
