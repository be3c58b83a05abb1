"""Pacer: even spacing, FIFO, batches, the one-second budget, and one real-time run."""

from __future__ import annotations

import asyncio
import bisect
import itertools
import math
import time
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

import pytest

from orchestrator.pacing import DEFAULT_HEADROOM, Pacer, max_batch_for

T = TypeVar("T")


class FakeTime:
    """A clock that moves only when the pacer sleeps; ``stall`` makes the next sleep overshoot."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.stall = 0.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self.now += seconds + self.stall
        self.stall = 0.0
        await asyncio.sleep(0)

    def pacer(self, rate: float | None, headroom: float = 0.0) -> Pacer:
        return Pacer(rate, headroom=headroom, clock=self.clock, sleep=self.sleep)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def max_in_window(starts: Sequence[tuple[float, int]], width: float = 1.0) -> int:
    """The most messages starting in any half-open window ``[t, t + width)``."""
    times = [t for t, _ in starts]
    best = 0
    for i, (t, _) in enumerate(starts):
        end = bisect.bisect_left(times, t + width - 1e-9)
        best = max(best, sum(n for _, n in starts[i:end]))
    return best


async def sequential(pacer: Pacer, sizes: Sequence[int]) -> list[tuple[float, int]]:
    return [(await pacer.acquire(n), n) for n in sizes]


def test_single_messages_are_spaced_exactly_one_over_rate() -> None:
    fake = FakeTime()
    starts = run(sequential(fake.pacer(10), [1] * 25))
    assert [t for t, _ in starts] == pytest.approx([i / 10 for i in range(25)])
    assert max_in_window(starts) == 10


def test_headroom_paces_slightly_below_the_rate() -> None:
    fake = FakeTime()
    starts = run(sequential(fake.pacer(100, headroom=DEFAULT_HEADROOM), [1] * 300))
    gaps = {round(b[0] - a[0], 12) for a, b in itertools.pairwise(starts)}
    assert gaps == {round(1 / (100 * (1 - DEFAULT_HEADROOM)), 12)}
    # 101 consecutive starts span 1/(1-h) seconds: 15 ms of jitter cannot squeeze them into 1 s.
    assert starts[100][0] - starts[0][0] == pytest.approx(1 / (1 - DEFAULT_HEADROOM))


def test_a_batch_of_n_is_followed_by_a_gap_of_n_over_rate() -> None:
    fake = FakeTime()
    starts = run(sequential(fake.pacer(10), [5, 5, 2, 1, 2]))
    assert [t for t, _ in starts] == pytest.approx([0.0, 0.5, 1.0, 1.2, 1.3])


def test_batches_that_do_not_divide_the_rate_still_respect_every_window() -> None:
    fake = FakeTime()
    starts = run(sequential(fake.pacer(10), [3] * 30))
    # Plain GCRA would start 4 batches (12 messages) at 0, 0.3, 0.6 and 0.9.
    assert [t for t, _ in starts[:5]] == pytest.approx([0.0, 0.3, 0.6, 1.0, 1.3])
    assert max_in_window(starts) <= 10
    assert max_in_window(starts, width=1.0 - 1e-6) == 9


def test_non_integer_rate_uses_its_floor_as_the_budget() -> None:
    fake = FakeTime()
    pacer = fake.pacer(2.5)
    assert pacer.budget == 2
    starts = run(sequential(pacer, [1] * 20))
    assert max_in_window(starts) == 2
    assert starts[1][0] - starts[0][0] == pytest.approx(0.5)


def test_rate_below_one_per_second_sends_one_at_a_time() -> None:
    fake = FakeTime()
    starts = run(sequential(fake.pacer(0.5), [1, 1, 1]))
    assert [t for t, _ in starts] == pytest.approx([0.0, 2.0, 4.0])


def test_no_burst_after_idle_time() -> None:
    fake = FakeTime()
    pacer = fake.pacer(10)

    async def scenario() -> list[float]:
        await pacer.acquire()
        fake.now += 60.0  # a quiet minute earns no credit
        return [await pacer.acquire() for _ in range(3)]

    assert run(scenario()) == pytest.approx([60.0, 60.1, 60.2])


def test_concurrent_callers_are_served_in_call_order() -> None:
    fake = FakeTime()
    pacer = fake.pacer(4)
    served: list[tuple[str, float]] = []

    async def caller(name: str, n: int) -> None:
        served.append((name, await pacer.acquire(n)))

    async def scenario() -> None:
        names = ["a", "b", "c", "d", "e", "f"]
        sizes = [1, 2, 1, 3, 1, 1]
        await asyncio.gather(*(caller(name, n) for name, n in zip(names, sizes, strict=True)))

    run(scenario())
    assert [name for name, _ in served] == ["a", "b", "c", "d", "e", "f"]
    # Spacing alone would start "d" at 1.0, but 0.25 (2) + 0.75 (1) + 3 would be 6 in one window.
    assert [t for _, t in served] == pytest.approx([0.0, 0.25, 0.75, 1.25, 1.75, 2.25])
    assert pacer.waiting == 0
    # Only the head of the queue sleeps: one sleep per caller after the first.
    assert len(fake.sleeps) == 5


def test_a_cancelled_caller_leaves_the_queue_and_keeps_its_share() -> None:
    fake = FakeTime()
    pacer = fake.pacer(10)
    served: list[tuple[int, float]] = []

    async def caller(i: int) -> None:
        served.append((i, await pacer.acquire()))

    async def scenario() -> None:
        tasks = [asyncio.create_task(caller(i)) for i in range(6)]
        await asyncio.sleep(0)  # every caller has made its reservation; 0 has started
        tasks[1].cancel()  # the head, asleep until its turn
        tasks[3].cancel()  # one in the middle
        await asyncio.gather(*tasks, return_exceptions=True)

    run(scenario())
    assert [i for i, _ in served] == [0, 2, 4, 5]
    # Nobody moves into a cancelled caller's slot: erring slow, never fast.
    assert [t for _, t in served] == pytest.approx([0.0, 0.2, 0.4, 0.5])
    assert pacer.waiting == 0


def test_a_late_wake_up_catches_up_without_breaking_the_budget() -> None:
    fake = FakeTime()
    pacer = fake.pacer(10)
    starts: list[tuple[float, int]] = []

    async def caller() -> None:
        starts.append((await pacer.acquire(), 1))
        if len(starts) == 3:
            fake.stall = 0.55  # the event loop was busy: the next sleep ends late

    async def scenario() -> None:
        await asyncio.gather(*(caller() for _ in range(50)))

    run(scenario())
    times = [t for t, _ in starts]
    assert times[:3] == pytest.approx([0.0, 0.1, 0.2])
    # The callers whose turn came during the stall go at once (catching up) ...
    assert times[3:9] == pytest.approx([0.85] * 6)
    assert times[9] == pytest.approx(0.9)
    # ... but never more than the budget in any window, and the long-run schedule is kept.
    assert max_in_window(starts) <= 10
    assert times[-1] == pytest.approx(4.9)


def test_a_stalled_queue_cannot_burst_past_the_budget() -> None:
    fake = FakeTime()
    pacer = fake.pacer(10)
    starts: list[tuple[float, int]] = []

    async def caller() -> None:
        starts.append((await pacer.acquire(), 1))
        if len(starts) == 2:
            fake.stall = 3.0  # long enough for 30 reservations to fall due at once

    async def scenario() -> None:
        await asyncio.gather(*(caller() for _ in range(40)))

    run(scenario())
    times = [t for t, _ in starts]
    assert max_in_window(starts) <= 10
    # The third sleep ends at 3.2 instead of 0.2: of the 30 callers due by then only a window's
    # budget goes, and the next ones wait for that window to pass.
    assert times[:2] == pytest.approx([0.0, 0.1])
    assert times[2:12] == pytest.approx([3.2] * 10)
    assert times[12] == pytest.approx(4.2)


def test_unlimited_never_waits() -> None:
    for rate in (None, math.inf):
        fake = FakeTime()
        pacer = fake.pacer(rate)
        assert pacer.rate is None and pacer.budget is None
        starts = run(sequential(pacer, [1000] * 50))
        assert {t for t, _ in starts} == {0.0}
        assert fake.sleeps == []


def test_invalid_arguments_are_refused() -> None:
    fake = FakeTime()
    for rate in (0, -1.0, math.nan):
        with pytest.raises(ValueError):
            Pacer(rate)
    for headroom in (-0.1, 1.0):
        with pytest.raises(ValueError):
            Pacer(10, headroom=headroom)
    pacer = fake.pacer(10)
    with pytest.raises(ValueError, match="max_batch_for"):
        run(pacer.acquire(11))
    with pytest.raises(ValueError):
        run(pacer.acquire(0))
    assert pacer.waiting == 0


@pytest.mark.parametrize(
    ("rate", "notifier_max", "expected"),
    [
        (10, 1000, 10),
        (10.9, 1000, 10),
        (100, 30, 30),
        (0.5, 100, 1),
        (1, 1, 1),
        (None, 500, 500),
        (math.inf, 500, 500),
    ],
)
def test_max_batch_for(rate: float | None, notifier_max: int, expected: int) -> None:
    assert max_batch_for(rate, notifier_max) == expected


def test_max_batch_for_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        max_batch_for(10, 0)
    with pytest.raises(ValueError):
        max_batch_for(0, 10)


def test_real_time_rate_and_windows() -> None:
    """200/s for 2 s on the real clock: no window over 200, long-run rate within 5 %."""
    rate, duration = 200, 2.0
    pacer = Pacer(rate)
    starts: list[float] = []

    async def worker(deadline: float) -> None:
        while True:
            started = await pacer.acquire()
            if started >= deadline:
                return
            starts.append(started)
            await asyncio.sleep(0.001)  # a send taking a little while

    async def scenario() -> None:
        deadline = time.monotonic() + duration
        await asyncio.gather(*(worker(deadline) for _ in range(8)))

    run(scenario())
    assert starts == sorted(starts)
    assert max_in_window([(t, 1) for t in starts]) <= rate
    # Measured over the span actually covered, so a stall just before the deadline (a loaded
    # machine) does not count as slowness; stalls elsewhere are caught up by design.
    measured = (len(starts) - 1) / (starts[-1] - starts[0])
    assert rate * 0.95 <= measured <= rate * 1.05
    assert len(starts) >= rate * duration * 0.8
