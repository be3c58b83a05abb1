"""What workers on one ledger share, statement by statement: the worker registry, the fan-out
lease and its fence, duplicate keys through COPY, shared pacing, wake-ups."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import os
import random
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cli_support import run
from engine_support import PLAYBOOK, phone_audience, standin_host, trigger_live
from sqlalchemy import select

from orchestrator.errors import LeaseLost
from orchestrator.ledger import DUPLICATE_REASON, Delivery, Ledger
from orchestrator.session import Breach
from orchestrator.sharedpacing import MAX_SLOTS_PER_RESERVATION, SharedPacer
from orchestrator.workers import Presence


@pytest.fixture
def incident(ledger_url: str, tmp_path: Path) -> str:
    """A live incident with one scheduled step (sms-all) and nothing fanned out yet."""
    host = standin_host("http://127.0.0.1:9")
    return trigger_live(tmp_path, phone_audience(tmp_path / "p.csv", 3), host, ledger_url)


def row(incident: str, who: str, position: int) -> dict[str, Any]:
    stamp = datetime.now(UTC)
    return {"key": f"{incident}:sms-all:{who}", "incident_id": incident, "step_id": "sms-all",
            "recipient_id": who, "recipient_row": position, "channel": "sms",
            "notifier": "standin-sms", "contact": "+14155550100", "state": "pending",
            "recipient_data": {"name": "Ann", "attrs": {"tier": 1}},
            "next_attempt_at": stamp, "created_at": stamp, "updated_at": stamp}  # fmt: skip


def keys(ledger: Ledger, incident: str) -> list[str]:
    with ledger.session() as s:
        return sorted(s.scalars(select(Delivery.key).where(Delivery.incident_id == incident)))


def test_a_live_worker_keeps_its_fanout_and_a_dead_ones_is_taken_over(
    ledger_url: str, incident: str
) -> None:
    a, b = Ledger(ledger_url), Ledger(ledger_url)
    a.register_worker("host:1:a", host="host", pid=1, kind="run", timeout=30)
    b.register_worker("host:2:b", host="host", pid=2, kind="run", timeout=30)
    assert a.take_fanout(incident, "sms-all")
    assert not b.take_fanout(incident, "sms-all")  # a is alive
    a.insert_deliveries([row(incident, "p1", 1)], progress=(incident, "sms-all", 1, False))

    a.heartbeat("host:1:a", timeout=-1)  # a's heartbeat is stale: a is dead
    assert [w["id"] for w in b.live_workers()] == ["host:2:b"]
    assert b.take_fanout(incident, "sms-all")
    assert b.step(incident, "sms-all").fanout_rows == 1  # where b resumes
    # a was only stalled: its next batch is refused and leaves nothing behind
    with pytest.raises(LeaseLost, match="held by worker host:2:b"):
        a.insert_deliveries([row(incident, "p2", 2)], progress=(incident, "sms-all", 2, False))
    assert keys(a, incident) == [f"{incident}:sms-all:p1"]
    assert (
        b.insert_deliveries([row(incident, "p2", 2)], progress=(incident, "sms-all", 2, True)) == []
    )
    assert not a.take_fanout(incident, "sms-all")  # a is dead to the others, b holds it
    assert b.step(incident, "sms-all").fanout_rows == 2


def test_a_stopped_worker_frees_its_fanout_at_once(ledger_url: str, incident: str) -> None:
    a, b = Ledger(ledger_url), Ledger(ledger_url)
    a.register_worker("a", host="h", pid=1, kind="serve", timeout=300)
    b.register_worker("b", host="h", pid=2, kind="run", timeout=300)
    assert a.take_fanout(incident, "sms-all")
    a.stop_worker("a")
    assert b.take_fanout(incident, "sms-all")
    assert [w["id"] for w in a.live_workers()] == ["b"]


def test_a_process_that_is_no_worker_fans_out_only_what_nobody_holds(
    ledger_url: str, incident: str
) -> None:
    worker, other = Ledger(ledger_url), Ledger(ledger_url)
    assert other.take_fanout(incident, "sms-all")  # nobody holds it
    worker.register_worker("w", host="h", pid=1, kind="run", timeout=300)
    assert worker.take_fanout(incident, "sms-all")
    assert not other.take_fanout(incident, "sms-all")
    with pytest.raises(LeaseLost):
        other.insert_deliveries([row(incident, "p1", 1)], progress=(incident, "sms-all", 1, True))


def test_a_worker_process_still_records_a_step_nobody_holds(tmp_path: Path) -> None:
    """``breach serve`` is a worker and runs dry runs at trigger time, outside any lease."""
    db = f"sqlite:///{tmp_path / 'l.db'}"
    breach = Breach(db, host=standin_host("http://127.0.0.1:9"))
    breach.ledger.register_worker("serve", host="h", pid=1, kind="serve", timeout=300)
    result = breach.trigger(PLAYBOOK, audience=str(phone_audience(tmp_path / "p.csv", 3)),
                            mode="dry-run", outbox=tmp_path / "out")  # fmt: skip
    assert breach.status(result.incident_id)["state"] == "finished"
    assert len(keys(breach.ledger, result.incident_id)) == 3


def test_duplicate_keys_come_back_as_positions_and_are_kept_as_skipped_rows(
    ledger_url: str, incident: str
) -> None:
    ledger = Ledger(ledger_url)
    first = [row(incident, "p1", 1), row(incident, "p2", 2), row(incident, "p1", 3)]
    assert ledger.insert_deliveries(first) == [2]  # a repeat inside the batch
    second = [row(incident, "p3", 4), row(incident, "p2", 5)]
    assert ledger.insert_deliveries(second) == [1]  # a repeat of an earlier batch
    assert ledger.insert_deliveries([]) == []
    with ledger.session() as s:
        found = {d.recipient_id: d for d in s.scalars(select(Delivery))}
    assert sorted(found) == ["p1", "p1#row3", "p2", "p2#row5", "p3"]
    assert found["p1"].recipient_row == 1  # the first one wins
    assert found["p1#row3"].state == "skipped" and found["p1#row3"].reason == DUPLICATE_REASON
    assert found["p1"].recipient_data == {"name": "Ann", "attrs": {"tier": 1}}
    assert found["p1"].next_attempt_at is not None and found["p1"].next_attempt_at.tzinfo


def test_pace_reservations_of_several_workers_follow_each_other(ledger_url: str) -> None:
    handles = [Ledger(ledger_url) for _ in range(3)]
    # 10 s each: far more than the calls take, so every one starts where the last one ended
    answers = [handle.reserve_pace("standin-sms", 10.0) for handle in handles * 4]
    starts = [start for start, _ in answers]
    assert answers[0][0] - answers[0][1] < 1.0  # the first starts at once
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert all(9.0 < gap <= 10.0 for gap in gaps), gaps
    start, at = handles[0].reserve_pace("other-notifier", 10.0)
    assert start - at < 1.0  # its own row


class SharedClock:
    """Virtual time for pacers in one event loop, and their one shared reservation row.

    A sleeper wakes when the clock reaches its moment (now and then later: a starved event
    loop); the clock jumps to the earliest sleeper once every task waits.
    """

    def __init__(self, late: float = 0.0, seed: int = 7) -> None:
        self.now = 1000.0
        self.next_start = 0.0
        self.late = late
        self.rng = random.Random(seed)
        self.sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self.order = itertools.count()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        extra = self.late if self.rng.random() < 0.2 else 0.0
        woken = asyncio.get_running_loop().create_future()
        heapq.heappush(self.sleepers, (self.now + max(0.0, seconds) + extra, next(self.order),
                                       woken))  # fmt: skip
        await woken

    async def reserve(self, seconds: float) -> tuple[float, float]:
        start = max(self.next_start, self.now)
        self.next_start = start + seconds
        return start, self.now

    async def drive(self, work: asyncio.Future[Any]) -> None:
        while not work.done():
            for _ in range(20):  # let every runnable task run until it sleeps
                await asyncio.sleep(0)
            if self.sleepers:
                at, _, woken = heapq.heappop(self.sleepers)
                self.now = max(self.now, at)
                woken.set_result(None)


@pytest.mark.parametrize("late", [0.0, 0.1])
def test_shared_pacers_never_exceed_the_rate_in_any_window(late: float) -> None:
    shared = SharedClock(late=late)
    rate, max_batch = 100.0, 7  # 14 slots a second carry at most 98 messages
    pacers = [SharedPacer(rate, max_batch, shared.reserve, clock=shared.clock,
                          sleep=shared.sleep) for _ in range(3)]  # fmt: skip
    sizes = random.Random(3)
    starts: list[tuple[float, int]] = []

    async def worker(pacer: SharedPacer) -> None:
        for _ in range(60):
            # mostly full batches (a window fills up), sometimes a short one
            n = max_batch if sizes.random() < 0.8 else sizes.randint(1, max_batch)
            starts.append((await pacer.acquire(n), n))

    async def main() -> None:
        work = asyncio.gather(*(worker(p) for p in pacers))
        await shared.drive(work)
        await work

    asyncio.run(main())
    starts.sort()
    worst = max(sum(n for t, n in starts if s <= t < s + 1.0) for s, _ in starts)
    assert worst <= math.floor(rate), worst
    assert len(starts) == 180
    if late:
        assert sum(p.forfeited for p in pacers) > 0  # late slots were given up, not used


def test_a_shared_pacer_keeps_up_with_a_rate_of_millions() -> None:
    """Slots a tenth of a microsecond apart: each reservation holds a bounded run, and a late
    batch gives up every slot already past in one go."""
    shared = SharedClock()
    pacer = SharedPacer(10_000_000.0, 1, shared.reserve, clock=shared.clock, sleep=shared.sleep)
    reservations = 0
    reserve = shared.reserve

    async def counted(seconds: float) -> tuple[float, float]:
        nonlocal reservations
        reservations += 1
        return await reserve(seconds)

    pacer._reserve = counted

    async def main() -> int:
        started = 0
        for _ in range(500):
            await pacer.acquire(1)
            started += 1
            shared.now += 0.001  # each start takes a millisecond: ten thousand slots pass
        return started

    assert asyncio.run(main()) == 500
    assert reservations <= 2 * 500 and pacer.forfeited > 0
    assert len(pacer._slots) <= MAX_SLOTS_PER_RESERVATION


def test_a_shared_pacer_refuses_batches_larger_than_a_slot() -> None:
    async def reserve(seconds: float) -> tuple[float, float]:
        return 0.0, 0.0

    with pytest.raises(ValueError, match="between 1 and 10"):
        SharedPacer(10.0, 11, reserve)
    pacer = SharedPacer(10.0, 5, reserve)
    with pytest.raises(ValueError, match="does not fit"):
        asyncio.run(pacer.acquire(6))


@pytest.mark.skipif(
    not os.environ.get("BREACH_TEST_POSTGRES_URL"), reason="BREACH_TEST_POSTGRES_URL is unset"
)
def test_new_deliveries_wake_an_idle_worker_on_postgres(ledger_url: str, incident: str) -> None:
    if not ledger_url.startswith("postgresql"):
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's")
    worker, writer = Ledger(ledger_url), Ledger(ledger_url)

    async def main() -> None:
        stop = asyncio.Event()
        presence = Presence(worker, kind="run", timeout=30)
        await presence.start(stop)
        try:
            await asyncio.wait_for(presence.listening.wait(), 20)
            sleeping = asyncio.create_task(presence.wakeup.sleep(stop, 3600))
            await asyncio.sleep(0.1)
            assert not sleeping.done()
            await asyncio.to_thread(writer.insert_deliveries, [row(incident, "p1", 1)])
            await asyncio.wait_for(sleeping, 20)  # woken, long before the hour is up
        finally:
            stop.set()
            await presence.stop()

    asyncio.run(main())
    assert worker.live_workers() == []  # stopped cleanly


def test_status_says_how_many_workers_are_live(
    ledger_url: str, incident: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger = Ledger(ledger_url)
    for n in range(3):
        ledger.register_worker(f"h:{n}:x", host="h", pid=n, kind="run", timeout=300)
    ledger.register_worker("h:9:x", host="h", pid=9, kind="run", timeout=-1)  # dead
    code, out, _ = run("status", incident, "--db", ledger_url, capsys=capsys)
    assert code == 0
    assert "workers: 3 live" in out
    code, out, _ = run("status", incident, "--db", ledger_url, "--json", capsys=capsys)
    assert code == 0 and '"live": 3' in out
    code, out, _ = run("status", "--db", ledger_url, capsys=capsys)
    assert code == 0 and "workers: 3 live" in out


def test_a_restart_on_the_same_host_frees_what_its_killed_predecessor_held(
    ledger_url: str, incident: str
) -> None:
    old = Ledger(ledger_url)
    here = socket.gethostname()
    old.register_worker("killed", host=here, pid=_pid_of_finished(), kind="run", timeout=300)
    old.register_worker("elsewhere", host="other-host", pid=1, kind="run", timeout=300)
    old.register_worker("sibling", host=here, pid=os.getpid(), kind="run", timeout=300)
    old.worker_id = "killed"
    assert old.take_fanout(incident, "sms-all")
    new = Ledger(ledger_url)

    async def main() -> None:
        stop = asyncio.Event()
        presence = Presence(new, kind="run", timeout=300)
        await presence.start(stop)
        try:
            assert new.take_fanout(incident, "sms-all")  # at once, not in five minutes
        finally:
            stop.set()
            await presence.stop()

    asyncio.run(main())
    assert sorted(w["id"] for w in new.live_workers()) == ["elsewhere", "sibling"]


def _pid_of_finished() -> int:
    """The process id of a process that ended (and was reaped): nobody uses it now."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid
