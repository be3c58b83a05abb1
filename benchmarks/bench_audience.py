"""Audience throughput and memory: generate, then read and normalise, CSV and JSONL.

    python benchmarks/bench_audience.py --rows 1000000

Each measurement runs in a fresh process, so its peak RSS is its own; the tracemalloc peak (Python
allocations only) is taken in a separate run because tracing slows the code several times.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

STAGES = ("generate-csv", "generate-jsonl", "read-csv", "read-jsonl")


def _measure(stage: str, path: Path, rows: int, seed: int, trace: bool) -> dict[str, Any]:
    from orchestrator.sources.csvfile import open_csv
    from orchestrator.sources.jsonl import open_jsonl
    from orchestrator.synthetic import generate_audience

    if trace:
        tracemalloc.start()
    started = time.perf_counter()
    count = 0
    if stage.startswith("generate"):
        count = generate_audience(path, rows, seed=seed).rows
    else:
        source = open_csv(str(path), {}) if stage == "read-csv" else open_jsonl(str(path), {})
        for _recipient in source:
            count += 1
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1] if trace else None
    # ru_maxrss is in KiB on Linux, bytes on macOS
    scale = 1 if sys.platform == "darwin" else 1024
    return {
        "stage": stage,
        "rows": count,
        "seconds": seconds,
        "max_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale,
        "trace_peak": peak,
    }


def _run(stage: str, path: Path, rows: int, seed: int, trace: bool) -> dict[str, Any]:
    command = [sys.executable, __file__, "--worker", stage, "--file", str(path)]
    command += ["--rows", str(rows), "--seed", str(seed)] + (["--trace"] if trace else [])
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="the large size")
    parser.add_argument("--small", type=int, default=100_000, help="the small size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-trace", action="store_true", help="skip the tracemalloc runs")
    parser.add_argument("--worker", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        print(json.dumps(_measure(args.worker, args.file, args.rows, args.seed, args.trace)))
        return

    header = f"{'stage':<15}{'rows':>11}{'seconds':>9}{'rows/s':>10}{'RSS MB':>9}{'traced MB':>11}"
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        for rows in sorted({args.small, args.rows}):
            files = {"csv": Path(tmp, f"a{rows}.csv"), "jsonl": Path(tmp, f"a{rows}.jsonl")}
            for stage in STAGES:
                path = files[stage.split("-")[1]]
                timed = _run(stage, path, rows, args.seed, trace=False)
                traced = None
                if stage.startswith("read") and not args.no_trace:
                    traced = _run(stage, path, rows, args.seed, trace=True)["trace_peak"]
                print(
                    f"{stage:<15}{timed['rows']:>11,}{timed['seconds']:>9.1f}"
                    f"{timed['rows'] / timed['seconds']:>10,.0f}{timed['max_rss'] / 1e6:>9.1f}"
                    f"{'-' if traced is None else f'{traced / 1e6:.1f}':>11}"
                )
            sizes = ", ".join(f"{k} {p.stat().st_size / 1e6:.0f} MB" for k, p in files.items())
            print(f"{'':<15}files: {sizes}")


if __name__ == "__main__":
    main()
