"""The engine's own cost per message: the whole pipeline with a provider that answers at once.

    python benchmarks/bench_overhead.py [--people 20000] [--postgres URL] [--repeat 3]

The same one-step SMS incident as ``bench_pipeline.py`` (``Breach.trigger``, then ``Breach.run``
until idle at 10,000,000 messages a second, 64 batches in flight), except that twilio-sms answers
every message at once without a request: what is left is the engine itself, i.e. the fan-out,
the ledger's claims and settlements, pacing and dispatch, for a notifier of twilio-sms's shape
(one message a batch, so every per-batch cost is a per-message one; ``bench_engine.py``'s
``null-sms`` takes 100 a batch). It tells where a message's CPU time
goes on each ledger, by kind of thread (the event loop, the ledger's threads, the fan-out's),
and what the ledger's claims and settlements cost each (their threads' CPU time). Linux only
(threads' CPU times come from ``/proc``). Every run is a child process of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_pipeline import (  # noqa: E402
    Span,
    _median,
    _postgres_fresh,
    answer_as_child,
    one_step,
    run_child,
)

#: the kinds of thread, by the start of their names (the event loop runs in the main thread)
KINDS = {"MainThread": "loop", "breach-ledger": "ledger", "breach-fanout": "fan-out"}
#: the ledger calls whose CPU time is counted, as the thread that made them spent it
CALLS = ("claim", "settle", "insert_deliveries")


def thread_cpu() -> dict[str, float]:
    """CPU seconds (user + system) so far of this process's threads, summed per kind."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    tick = os.sysconf("SC_CLK_TCK")
    spent: dict[str, float] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended meanwhile
        name = names.get(int(task.name), "")
        kind = next((k for prefix, k in KINDS.items() if name.startswith(prefix)), "other")
        spent[kind] = spent.get(kind, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return spent


def child(people: int, db: str, work: str) -> dict[str, Any]:
    """One run: trigger and run to idle with twilio-sms answering at once."""
    import breach_twilio.notifiers as twilio

    from orchestrator.ledger import Ledger
    from orchestrator.message import Message
    from orchestrator.notifier import Mode, Outcome, Receipt

    async def instant(self: Any, batch: Sequence[Message], mode: Mode) -> list[Receipt]:
        await asyncio.sleep(0)  # a request would yield to the event loop once at least
        return [Receipt(m.delivery_id, Outcome.SENT, provider_id=f"SM{m.delivery_id[-24:]}")
                for m in batch]  # fmt: skip

    twilio.TwilioSms.send = instant  # type: ignore[method-assign]
    calls: dict[str, list[float]] = {name: [0, 0, 0.0] for name in CALLS}

    def counted(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            started = time.thread_time()
            try:
                return method(self, *args, **kwargs)
            finally:
                tally = calls[name]
                tally[0] += 1
                tally[1] += len(args[0]) if name != "claim" else 0
                tally[2] += time.thread_time() - started

        return call

    for name in CALLS:
        setattr(Ledger, name, counted(name, getattr(Ledger, name)))
    claim = Ledger.claim

    def claim_rows(self: Any, *args: Any, **kwargs: Any) -> Any:
        rows = claim(self, *args, **kwargs)
        calls["claim"][1] += len(rows)
        return rows

    Ledger.claim = claim_rows  # type: ignore[method-assign]
    breach, playbook, listed, settings = one_step("http://127.0.0.1:9", "sms", people, db, work)
    threads: dict[str, float] = {}
    close = Ledger.close

    def closing(self: Any) -> None:  # the ledger's threads end with it: read them first
        threads.update(thread_cpu())
        close(self)

    Ledger.close = closing  # type: ignore[method-assign]
    before = thread_cpu()
    with Span() as span:
        incident = breach.trigger(playbook, audience=str(listed), mode="live").incident_id
        breach.run(settings, until_idle=True)
    threads = threads or thread_cpu()
    spent = {kind: threads.get(kind, 0.0) - before.get(kind, 0.0) for kind in threads}
    sent = breach.status(incident)["steps"][0]["deliveries"].get("sent", 0)
    return {"seconds": span.wall, "cpu": span.cpu, "sent": sent, "threads": spent,
            "calls": calls}  # fmt: skip


def spawn(people: int, db: str, work: str) -> dict[str, Any]:
    what = f"run on {db.split(':')[0]}"
    return run_child(what, __file__, "--child", json.dumps([people, db, work]))


def table(rows: Sequence[tuple[str, dict[str, Any]]], people: int) -> str:
    head = (f"{'ledger':<10}{'people':>8}{'msgs/s':>9}{'CPU/msg':>9}{'loop':>7}{'ledger':>8}"
            f"{'fan-out':>9}   claims: calls  µs/row   settles: calls  µs/row")  # fmt: skip
    lines = [f"{people:,} SMS answered at once; CPU µs per message, by thread", head,
             "-" * len(head)]  # fmt: skip
    for name, got in rows:
        sent = max(got["sent"], 1)
        per = {kind: got["threads"].get(kind, 0.0) / sent * 1e6 for kind in KINDS.values()}
        claim, settle = got["calls"]["claim"], got["calls"]["settle"]
        lines.append(
            f"{name:<10}{got['sent']:>8,}{got['sent'] / got['seconds']:>9,.0f}"
            f"{got['cpu'] / sent * 1e6:>9.0f}{per['loop']:>7.0f}{per['ledger']:>8.0f}"
            f"{per['fan-out']:>9.0f}{claim[0]:>17,}{claim[2] / max(claim[1], 1) * 1e6:>8.1f}"
            f"{settle[0]:>17,}{settle[2] / max(settle[1], 1) * 1e6:>8.1f}"
        )
    return "\n".join(lines)


def main() -> None:
    if answer_as_child(child):
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--people", type=int, default=20_000, help="SMS to send")
    parser.add_argument("--postgres", metavar="URL", help="also run on this PostgreSQL ledger")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="run each ledger N times and show its median run")  # fmt: skip
    args = parser.parse_args()
    rows: list[tuple[str, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        ledgers: list[tuple[str, Callable[[int], str]]] = [
            ("sqlite", lambda i: f"sqlite:///{Path(tmp) / f'l{i}.db'}")
        ]
        if args.postgres:
            ledgers.append(("postgres", lambda _i: _postgres_fresh(args.postgres)))
        for name, db in ledgers:
            runs = [spawn(args.people, db(i), tmp) for i in range(args.repeat)]
            rows.append((name, _median(runs)))
    print(table(rows, args.people))


if __name__ == "__main__":
    main()
