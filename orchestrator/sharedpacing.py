"""Pacing shared by every worker of a PostgreSQL ledger: one rate limit for all of them.

The rate is cut into **slots**: a slot starts one batch of at most ``max_batch`` messages, and a
second holds ``k = floor(budget / max_batch)`` of them, spaced ``1 / (k * (1 - headroom))``
seconds apart. Starts that keep that spacing can never put more than ``k * max_batch <= budget``
messages in any one-second window, whichever worker sends them and however small the batches.

The slots live in the ledger (:meth:`~orchestrator.ledger.Ledger.reserve_pace`): a worker
reserves a short run of them in one statement, which moves the notifier's next free moment
forward on the database's clock, and then starts its batches at the reserved moments. Nothing
is divided among workers in advance, so an idle worker takes nothing and a SIGKILLed one leaves
at most the run it had reserved unused (a little slower, never faster).

A batch that would start more than ``late_tolerance`` after its slot (the event loop stalled, the
process was starved) does not use it: the slot is given up and the next one taken, so lateness
cannot bunch starts together. The headroom covers that tolerance and the arrival jitter between
hosts (a message that leaves on time can still reach the provider a little late).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable

from .pacing import Clock, Sleep

__all__ = ["SHARED_HEADROOM", "SharedPacer"]

#: the fraction of the rate left unused: late starts (up to ``LATE_TOLERANCE``) plus jitter
SHARED_HEADROOM = 0.05
#: the most a start may lag its slot, in seconds; a later one takes the next slot instead
LATE_TOLERANCE = 0.02
#: how much sending time one reservation takes at once: fewer round trips, little waste
RESERVE_SECONDS = 0.05

#: the most slots one reservation takes, however close together the rate puts them
MAX_SLOTS_PER_RESERVATION = 256

#: reserve(seconds) -> (when the reserved time starts, when it was reserved) on the shared clock
Reserve = Callable[[float], Awaitable[tuple[float, float]]]


class SharedPacer:
    """The same interface as :class:`~orchestrator.pacing.Pacer` (``await acquire(n)``), over
    slots reserved in the shared ledger. One per notifier per worker."""

    def __init__(
        self,
        rate: float,
        max_batch: int,
        reserve: Reserve,
        *,
        headroom: float = SHARED_HEADROOM,
        late_tolerance: float = LATE_TOLERANCE,
        reserve_seconds: float = RESERVE_SECONDS,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if not rate > 0 or math.isinf(rate):
            raise ValueError(f"a shared rate must be positive and finite, not {rate}")
        if not 0 <= headroom < 1:
            raise ValueError(f"headroom must be in [0, 1), not {headroom}")
        self.budget = max(1, math.floor(rate))
        if not 1 <= max_batch <= self.budget:
            raise ValueError(f"max_batch {max_batch} must be between 1 and {self.budget}")
        self.max_batch = max_batch
        self.slots_per_second = self.budget // max_batch
        #: seconds between two slots
        self.spacing = 1.0 / (self.slots_per_second * (1 - headroom))
        if rate < 1:
            self.spacing = max(self.spacing, 1.0 / (rate * (1 - headroom)))
        self.late_tolerance = late_tolerance
        # at very high rates (slots microseconds apart) a reservation holds a bounded run
        self._per_reservation = max(
            1, min(MAX_SLOTS_PER_RESERVATION, math.floor(reserve_seconds / self.spacing))
        )
        self._reserve = reserve
        self._clock = clock
        self._sleep = sleep
        self._slots: deque[float] = deque()  # reserved start moments on this process's clock
        # The shared clock minus this process's clock lies between these bounds; each
        # reservation narrows them (the answer was computed between asking and hearing back).
        self._offset_low = -math.inf
        self._offset_high = math.inf
        self._lock = asyncio.Lock()
        #: slots given up because their batch would have started too late
        self.forfeited = 0

    async def acquire(self, n: int = 1) -> float:
        """Wait for a slot for ``n`` messages (``n <= max_batch``); returns when they may start."""
        if not 1 <= n <= self.max_batch:
            raise ValueError(f"a batch of {n} does not fit a slot of {self.max_batch}")
        # One caller at a time takes the next slot, so slots are used in order (FIFO).
        async with self._lock:
            while True:
                if not self._slots:
                    await self._refill()
                slot = self._slots.popleft()
                current = self._clock()
                if current < slot:
                    await self._sleep(slot - current)
                    current = self._clock()
                if current - slot <= self.late_tolerance:
                    return current
                self.forfeited += 1
                # every slot already as late goes too, without a clock read each: at a rate of
                # millions a second, hundreds pass while one batch starts
                while self._slots and current - self._slots[0] > self.late_tolerance:
                    self._slots.popleft()
                    self.forfeited += 1

    async def _refill(self) -> None:
        count = self._per_reservation
        asked = self._clock()
        start, reserved_at = await self._reserve(count * self.spacing)
        answered = self._clock()
        # The shared clock read ``reserved_at`` somewhere between asking and hearing back. One
        # slow answer (a lock wait, a busy host) would misplace the slots by up to its round
        # trip, so the offset keeps the tightest bounds any answer gave, down to the fastest.
        self._offset_low = max(self._offset_low, reserved_at - answered)
        self._offset_high = min(self._offset_high, reserved_at - asked)
        if self._offset_low > self._offset_high:  # a clock stepped: start over from this one
            self._offset_low, self._offset_high = reserved_at - answered, reserved_at - asked
        offset = (self._offset_low + self._offset_high) / 2
        first = start - offset
        self._slots = deque(first + i * self.spacing for i in range(count))
