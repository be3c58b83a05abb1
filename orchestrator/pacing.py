"""Pacing: start no more messages per second than a provider allows, evenly spaced.

Providers state their limits as "R messages per second" and enforce them over sliding or fixed
one-second windows: one message too many and they answer 429, or worse, drop it. :class:`Pacer`
therefore gives two promises:

- **never more than the budget in a window**: in any one-second window at most ``floor(rate)``
  messages start (at least one, so rates below 1/s still send). It is checked against the
  moments callers were actually released, over windows slightly longer than a second (see the
  headroom below), so callers woken late by a stalled event loop catch up only as far as that
  budget allows;
- **close to the rate in the long run**: reservations are spaced evenly (GCRA with no burst
  tolerance): a reservation of ``n`` messages is followed by a gap of ``n / pace`` seconds before
  the next one, where ``pace = rate * (1 - headroom)``, the rate first rounded down to a whole
  number when above 1/s (a window never holds a fraction of a message).

The headroom exists because the provider counts arrivals, not departures. Two messages that leave
exactly one window apart can arrive less than a second apart when the first one is delayed by the
network and the second one is not. Pacing a fraction ``h`` below the rate keeps any ``floor(rate)
+ 1`` consecutive starts at least ``1 / (1 - h)`` seconds apart, which tolerates about ``h``
seconds of arrival jitter (15 ms at the default 0.015) and costs 1.5 % of throughput.

A batch of ``n`` messages starts all at once, so ``n`` larger than the budget can never fit in one
window: cap batches with :func:`max_batch_for`. A batch size that does not divide ``floor(rate)``
still respects the budget but leaves part of every window unused (batches of 3 at 10/s give 9/s).

One pacer belongs to one event loop and one process. Workers on several hosts that share a provider
account must split the rate between them.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

__all__ = ["DEFAULT_HEADROOM", "Pacer", "max_batch_for"]

DEFAULT_HEADROOM = 0.015

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


def _is_unlimited(rate: float | None) -> bool:
    return rate is None or math.isinf(rate)


def max_batch_for(rate: float | None, notifier_max_batch: int) -> int:
    """The largest batch a notifier may send at ``rate`` messages per second.

    A batch starts all its messages at the same moment, so a batch larger than one second's budget
    would exceed the rate on its own: the batch is capped at ``max(1, floor(rate))``. Without a rate
    limit the notifier's own maximum applies.
    """
    if notifier_max_batch < 1:
        raise ValueError(f"notifier_max_batch must be at least 1, not {notifier_max_batch}")
    if _is_unlimited(rate):
        return notifier_max_batch
    assert rate is not None
    if not rate > 0:
        raise ValueError(f"rate must be positive, not {rate}")
    return min(notifier_max_batch, max(1, math.floor(rate)))


@dataclass(eq=False)
class _Waiter:
    due: float
    n: int
    # None for the caller that found the queue empty; the others wait for their turn here.
    turn: asyncio.Future[None] | None


class Pacer:
    """An asyncio rate limiter in messages per second: evenly spaced, no bursts, FIFO.

    ``await pacer.acquire(n)`` reserves ``n`` messages and returns when they may start. The
    reservation itself is made at once (so the order of calls is the order of service); only the
    caller at the head of the queue sleeps, and nothing is locked while it does.

    ``rate=None`` (or infinity) means unlimited: :meth:`acquire` returns at once. ``clock`` and
    ``sleep`` are injectable for tests; the defaults are ``time.monotonic`` and ``asyncio.sleep``,
    which share the event loop's clock.
    """

    def __init__(
        self,
        rate: float | None,
        *,
        headroom: float = DEFAULT_HEADROOM,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if rate is not None and not rate > 0:
            raise ValueError(f"rate must be positive or None for unlimited, not {rate}")
        if not 0 <= headroom < 1:
            raise ValueError(f"headroom must be in [0, 1), not {headroom}")
        self._rate = rate
        self._headroom = headroom
        self._clock = clock
        self._sleep = sleep
        self._unlimited = _is_unlimited(rate)
        self._budget = 1 if self._unlimited else max(1, math.floor(rate or 0))
        # A window can never hold a fractional message, so a non-integer rate above 1 is paced at
        # its floor: pacing at the full rate would only run into the window check in bursts.
        self._pace = 0.0 if self._unlimited else min(rate or 0, self._budget) * (1 - headroom)
        self._window = 1.0 / (1 - headroom)
        self._tat = -math.inf  # theoretical arrival time: when the next reservation is due
        self._queue: deque[_Waiter] = deque()
        self._starts: deque[tuple[float, int]] = deque()  # (released at, n) within one window
        self._started = 0  # sum of n in _starts

    @property
    def rate(self) -> float | None:
        """Messages per second as configured (``None`` when unlimited)."""
        return None if self._unlimited else self._rate

    @property
    def headroom(self) -> float:
        """The fraction of the rate kept unused to absorb network jitter."""
        return self._headroom

    @property
    def budget(self) -> int | None:
        """The most messages that may start in any one-second window (``None`` when unlimited)."""
        return None if self._unlimited else self._budget

    @property
    def waiting(self) -> int:
        """How many callers are waiting in :meth:`acquire`."""
        return len(self._queue)

    async def acquire(self, n: int = 1) -> float:
        """Reserve ``n`` messages and return, on the pacer's clock, the moment they may start.

        Raises ``ValueError`` when ``n`` exceeds the one-second budget (see :func:`max_batch_for`).
        A caller cancelled while waiting gives its place in the queue up, but not its share of the
        rate: the next callers are not moved forward, which errs on the side of sending slower.
        """
        if n < 1:
            raise ValueError(f"n must be at least 1, not {n}")
        if self._unlimited:
            return self._clock()
        if n > self._budget:
            raise ValueError(
                f"a batch of {n} exceeds the budget of {self._budget} messages per second; "
                "cap it with max_batch_for()"
            )
        # Bookkeeping happens before the first await, so concurrent callers are ordered by call.
        due = max(self._clock(), self._tat)
        self._tat = due + n / self._pace
        turn = asyncio.get_running_loop().create_future() if self._queue else None
        waiter = _Waiter(due, n, turn)
        self._queue.append(waiter)
        try:
            if turn is not None:
                await turn
            while True:
                now = self._clock()
                ready = max(waiter.due, self._window_opens(now, n))
                if now >= ready:
                    break
                await self._sleep(ready - now)
            self._starts.append((now, n))
            self._started += n
            return now
        finally:
            self._leave(waiter)

    def _window_opens(self, now: float, n: int) -> float:
        """The earliest moment from ``now`` at which ``n`` more starts keep every window in budget.

        A start at ``at`` leaves the window ending at ``t`` once ``at <= t - window``. Starts that
        have left it at ``now`` are forgotten (the clock does not go back); the others are kept, as
        this caller may be cancelled before it starts and the next one must still count them.
        """
        while self._starts and self._starts[0][0] <= now - self._window:
            self._started -= self._starts.popleft()[1]
        excess = self._started + n - self._budget
        if excess > 0:
            for at, k in self._starts:
                excess -= k
                if excess <= 0:
                    return at + self._window
        return now

    def _leave(self, waiter: _Waiter) -> None:
        was_head = bool(self._queue) and self._queue[0] is waiter
        self._queue.remove(waiter)
        if was_head and self._queue:
            nxt = self._queue[0].turn
            if nxt is not None and not nxt.done():
                nxt.set_result(None)
