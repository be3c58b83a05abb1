"""Several `breach run` processes on one ledger: one fan-out per step, one rate for all, a dead
worker's work taken over, every person reached once (plus the duplicates the ledger counts)."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
from engine_support import NOTIFIERS, deliveries, phone_audience, standin_host, trigger_live
from sqlalchemy import create_engine, select, text

from orchestrator.ledger import DUPLICATE_REASON, Ledger, Step
from orchestrator.session import Breach
from orchestrator.simulator import Simulator

PEOPLE = 50_000
#: the standin notifier's rate, shared by every worker, and what the simulator enforces
RATE = 1000

needs_postgres = pytest.mark.skipif(
    not os.environ.get("BREACH_TEST_POSTGRES_URL"), reason="BREACH_TEST_POSTGRES_URL is unset"
)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """The PostgreSQL test database, emptied."""
    url = os.environ["BREACH_TEST_POSTGRES_URL"]
    engine = create_engine(url)
    with engine.begin() as c:
        c.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    yield url


def worker_command(db: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "orchestrator", "--plugins-dir", str(NOTIFIERS), "run",
            "--until-idle", "--db", db, "--lease", "2", "--send-timeout", "2",
            "--worker-timeout", "3", "--retry-base", "0.05", *extra]  # fmt: skip


def start_workers(
    command: list[str], count: int, env: dict[str, str], log: IO[str]
) -> list[subprocess.Popen[bytes]]:
    return [subprocess.Popen(command, env=env, stdout=log, stderr=log) for _ in range(count)]


def step_row(ledger: Ledger, incident: str) -> Step:
    [step] = ledger.steps(incident)
    return step


@needs_postgres
@pytest.mark.postgres
def test_three_workers_on_postgres_one_killed_half_way(
    simulator: Simulator, postgres_url: str, tmp_path: Path
) -> None:
    db = postgres_url
    host = standin_host(simulator.url)
    incident = trigger_live(tmp_path, phone_audience(tmp_path / "people.csv", PEOPLE), host, db)
    ledger = Ledger(db)
    # The provider refuses (429) anything above the rate in any second: a breach would show.
    simulator.configure("standin", rate_limit=RATE, burst=RATE)
    env = {**os.environ, "STANDIN_URL": simulator.url, "STANDIN_RATE": str(RATE),
           "STANDIN_MAX_BATCH": "20"}  # fmt: skip
    log_path = tmp_path / "workers.log"
    # The simulator stamps each request as its thread, in this process, takes it: a full
    # collection of this process's heap (large at the end of a whole suite) pauses that thread,
    # and the requests queued meanwhile get stamped in a burst. Frozen, the heap so far is left
    # out of collections while the rate is measured.
    gc.collect()
    gc.freeze()
    with log_path.open("w") as log:
        workers = start_workers(worker_command(db), 3, env, log)
        by_pid = {w.pid: w for w in workers}
        try:
            # Half-way: when half the people have their row, or half have been sent to.
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                step = step_row(ledger, incident)
                if step.fanout_rows >= PEOPLE // 2 or len(simulator.accepted()) >= PEOPLE // 2:
                    break
                time.sleep(0.2)
            step = step_row(ledger, incident)
            owner = step.fanout_owner
            assert owner is not None, "nobody took the fan-out"
            during_fanout = not step.fanout_done
            # Kill the worker fanning the step out while it does; else any, half-way through.
            victim = by_pid[int(owner.split(":")[-2])] if during_fanout else workers[0]
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            at_kill = {"fanout_rows": step.fanout_rows, "sent": len(simulator.accepted())}
            for w in workers:
                if w is not victim:
                    assert w.wait(timeout=240) == 0, log_path.read_text()[-3000:]
        finally:
            gc.unfreeze()
            for w in workers:
                if w.poll() is None:
                    w.kill()
                    w.wait()

    rows = deliveries(db, incident)
    # No fan-out row written twice: one row per person, none a "duplicate" of another.
    assert len(rows) == PEOPLE
    assert len({r.recipient_id for r in rows}) == PEOPLE
    assert not [r for r in rows if r.reason == DUPLICATE_REASON]
    assert Counter(r.state for r in rows) == Counter({"sent": PEOPLE})
    step = step_row(ledger, incident)
    assert step.fanout_done and step.fanout_rows == PEOPLE
    if during_fanout:
        assert step.fanout_owner != owner, "the dead worker's fan-out was not taken over"
        kinds = [e.kind for e in ledger.events(incident)]
        assert kinds.count("step.fired") == 1 and kinds.count("step.resumed") == 1, kinds

    # Every person reached at the provider; extra copies only those the ledger counts.
    accepted = Counter(m.delivery_id for m in simulator.accepted("standin"))
    assert set(accepted) == {r.key for r in rows}
    extra = sum(n - 1 for n in accepted.values())
    reclaimed = ledger.reclaimed(incident)
    assert extra <= reclaimed, (extra, reclaimed)

    # One rate for the three: never above it in any second at the provider, which never had
    # to refuse anything. (The busiest sliding second is printed: it also counts the jitter of
    # the simulator's own thread on a loaded machine.)
    per_second = simulator.per_second("standin")
    busiest = max(per_second.values())
    sliding = simulator.busiest_window("standin")
    assert busiest <= RATE, busiest
    assert simulator.stats()["standin"]["outcomes"].get("rate_limited", 0) == 0

    if os.environ.get("BREACH_VERBOSE"):
        first = min(per_second)
        print(" ".join(f"{s - first}:{n}" for s, n in sorted(per_second.items())))
        print(log_path.read_text()[-4000:])
    status = Breach(db).status(incident)
    assert status["state"] == "finished"
    assert status["possible_duplicates"] == reclaimed
    assert status["workers"]["live"] == 0  # two stopped, one dead
    print(
        f"killed {'the fan-out owner' if during_fanout else 'a sender'} at {at_kill}; "
        f"busiest second {busiest}, sliding {sliding} (limit {RATE}); "
        f"extra copies {extra} <= possible duplicates {reclaimed}; "
        f"{len(per_second)} seconds of sending"
    )


def test_two_workers_on_one_sqlite_file_fan_a_step_out_once(
    simulator: Simulator, tmp_path: Path
) -> None:
    people = 20_000
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    host = standin_host(simulator.url)
    incident = trigger_live(tmp_path, phone_audience(tmp_path / "people.csv", people), host, db)
    env = {**os.environ, "STANDIN_URL": simulator.url, "STANDIN_RATE": "5000"}
    log_path = tmp_path / "workers.log"
    with log_path.open("w") as log:
        workers = start_workers(worker_command(db), 2, env, log)
        for w in workers:
            assert w.wait(timeout=240) == 0, log_path.read_text()[-3000:]

    rows = deliveries(db, incident)
    assert len(rows) == people
    assert not [r for r in rows if r.reason == DUPLICATE_REASON]
    assert Counter(r.state for r in rows) == Counter({"sent": people})
    kinds = [e.kind for e in Ledger(db).events(incident)]
    assert kinds.count("step.fired") == 1, kinds
    assert "step.resumed" not in kinds
    accepted = Counter(m.delivery_id for m in simulator.accepted("standin"))
    assert set(accepted) == {r.key for r in rows}
    assert sum(n - 1 for n in accepted.values()) <= Ledger(db).reclaimed(incident)
    with Ledger(db).session() as s:
        owners = set(s.scalars(select(Step.fanout_owner).where(Step.incident_id == incident)))
    assert len(owners) == 1 and None not in owners
