"""One campaign carried by one, then several ``breach run`` processes on one ledger.

    python benchmarks/bench_workers.py [--channel email] [--people 100000] [--workers 1 2]
        [--postgres URL] [--repeat 1]

The canned endpoint of ``bench_pipeline.py`` runs in its own process. For each worker count, that
many engine processes start on one fresh ledger and load everything; then this process triggers
a one-step live incident (the same playbook and audience as ``bench_pipeline.py``) and all of
them run until idle at 10,000,000 messages a second, 64 batches in flight each. One of them
takes the step's fan-out (a lease), and every one claims and sends. msgs/s counts messages the
endpoint accepted from the trigger until the last worker went idle; CPU is each worker's own
process time over its run.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sys
import tempfile
import time
from collections.abc import Callable
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_pipeline import (  # noqa: E402
    CHANNELS,
    _postgres_fresh,
    _reset,
    _stat,
    canned_endpoint,
    one_step,
)


def worker(url: str, channel: str, db: str, work: str, go: Event, out: Any) -> None:
    """One engine process: loaded and waiting, then run until idle once ``go`` is set."""
    Path(work).mkdir()
    breach, _playbook, _people, settings = one_step(url, channel, 0, db, work)
    go.wait()
    started = time.process_time()
    breach.run(settings, until_idle=True)
    out.put((time.perf_counter(), time.process_time() - started))


def run(url: str, channel: str, people: int, workers: int, db: str) -> dict[str, Any]:
    """One campaign over ``workers`` engine processes: wall time, messages, CPU per worker."""
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as work:
        breach, playbook, listed, _settings = one_step(url, channel, people, db, work)
        go, out = ctx.Event(), ctx.Queue()
        procs = [ctx.Process(target=worker, args=(url, channel, db, f"{work}/w{n}", go, out))
                 for n in range(workers)]  # fmt: skip
        for proc in procs:
            proc.start()
        time.sleep(3 + workers)  # every worker loaded its modules and plugins
        asyncio.run(_reset(url))
        started = time.perf_counter()
        breach.trigger(playbook, audience=str(listed), mode="live")
        go.set()
        ends = [out.get(timeout=600) for _ in procs]
        for proc in procs:
            proc.join()
        breach.close()
    sent = asyncio.run(_stat(url, CHANNELS[channel][1]))
    return {"seconds": max(end for end, _ in ends) - started, "sent": sent,
            "cpu": [cpu for _, cpu in ends]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--channel", choices=sorted(CHANNELS), default="email")
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--postgres", metavar="URL", help="also run on this PostgreSQL ledger")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="run each count N times, interleaved")  # fmt: skip
    args = parser.parse_args()
    head = f"{'ledger':<10}{'workers':>8}{'people':>9}{'msgs/s':>9}  CPU seconds per worker"
    lines = [f"{args.channel}, one campaign, workers started before the trigger", head,
             "-" * len(head)]  # fmt: skip
    with canned_endpoint() as url, tempfile.TemporaryDirectory() as tmp:
        ledgers: list[tuple[str, Callable[[int], str]]] = [
            ("sqlite", lambda n: f"sqlite:///{Path(tmp) / f'l{n}.db'}")
        ]
        if args.postgres:
            ledgers.append(("postgres", lambda _n: _postgres_fresh(args.postgres)))
        number = 0
        for name, ledger in ledgers:
            for _ in range(args.repeat):
                for count in args.workers:
                    number += 1
                    got = run(url, args.channel, args.people, count, ledger(number))
                    cpu = ", ".join(f"{c:.2f}" for c in got["cpu"])
                    lines.append(f"{name:<10}{count:>8}{got['sent']:>9,}"
                                 f"{got['sent'] / got['seconds']:>9,.0f}  {cpu}")  # fmt: skip
    print("\n".join(lines))


if __name__ == "__main__":
    main()
