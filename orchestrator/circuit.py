"""Circuit breaker: stop hammering a provider that is down, and find out when it is back.

One breaker guards one notifier (one provider account). While it is open the delivery engine does
not send on that notifier; deliveries stay queued in the ledger and the campaign's status shows
why, so nothing is dropped and nothing burns its retry attempts against a dead endpoint.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum
from typing import Any

__all__ = ["CircuitBreaker", "CircuitState"]


class CircuitState(StrEnum):
    """Where a breaker stands."""

    CLOSED = "closed"  # sending normally
    OPEN = "open"  # not sending until the cooldown ends
    HALF_OPEN = "half_open"  # cooldown over: one probe batch at a time decides


class CircuitBreaker:
    """Open after ``failure_threshold`` consecutive failed batches; probe after a cooldown.

    - **closed**: :meth:`allow` says yes. Each failure counts; a success resets the count. The
      ``failure_threshold``-th failure in a row opens the breaker for ``cooldown`` seconds.
    - **open**: :meth:`allow` says no until the cooldown has passed, then the breaker is
      half-open.
    - **half-open**: :meth:`allow` lets exactly one probe batch through at a time. Its success
      closes the breaker and resets the cooldown; its failure opens it again for twice the previous
      cooldown, at most ``max_cooldown``. A probe that reports nothing within ``probe_timeout``
      (its caller was cancelled, say) is presumed lost and another one is allowed.

    **Only whole-batch failures count**: the provider could not be reached, timed out, or refused
    the request as a whole (5xx, authentication). A batch the provider answered message by message
    is a success for the breaker even when every message was refused permanently (invalid number,
    unsubscribed address): the provider is up, the recipients are the problem, and those
    deliveries fail on their own merits.

    Results reported while open are ignored: they describe batches sent before the breaker
    opened. In half-open any result decides, since the breaker cannot tell the probe's answer from
    a late one of an earlier batch, and either is news about the provider.

    ``clock`` is injectable for tests. A breaker is not thread-safe; use it from one event loop.
    """

    def __init__(
        self,
        failure_threshold: int = 5,
        cooldown: float = 30.0,
        max_cooldown: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        probe_timeout: float = 120.0,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be at least 1, not {failure_threshold}")
        if not cooldown > 0:
            raise ValueError(f"cooldown must be positive, not {cooldown}")
        if not max_cooldown >= cooldown:
            raise ValueError(f"max_cooldown must be at least cooldown ({cooldown})")
        if not probe_timeout > 0:
            raise ValueError(f"probe_timeout must be positive, not {probe_timeout}")
        self.failure_threshold = failure_threshold
        self.cooldown = cooldown
        self.max_cooldown = max_cooldown
        self.probe_timeout = probe_timeout
        self._clock = clock
        self._open = False  # open or half-open; which one depends on the clock
        self._opened_until = 0.0
        self._current_cooldown = cooldown
        self._failures = 0  # in a row, until a success
        self._probe_started: float | None = None
        self._trips = 0

    @property
    def state(self) -> CircuitState:
        """The state now (an open breaker whose cooldown has passed reads as half-open)."""
        if not self._open:
            return CircuitState.CLOSED
        if self._clock() < self._opened_until:
            return CircuitState.OPEN
        return CircuitState.HALF_OPEN

    @property
    def opened_until(self) -> float | None:
        """When, on the breaker's clock, an open breaker turns half-open; ``None`` unless open."""
        return self._opened_until if self.state is CircuitState.OPEN else None

    @property
    def consecutive_failures(self) -> int:
        """Failed batches in a row, failed probes included; a success resets it."""
        return self._failures

    def allow(self) -> bool:
        """May a batch be sent now? In half-open, a yes makes the caller the probe."""
        state = self.state
        if state is CircuitState.CLOSED:
            return True
        if state is CircuitState.OPEN:
            return False
        now = self._clock()
        if self._probe_started is not None and now - self._probe_started < self.probe_timeout:
            return False
        self._probe_started = now
        return True

    def record_success(self) -> None:
        """The batch reached the provider and got an answer (per-message refusals included)."""
        state = self.state
        if state is CircuitState.OPEN:
            return
        if state is CircuitState.HALF_OPEN:
            self._open = False
            self._current_cooldown = self.cooldown
            self._probe_started = None
        self._failures = 0

    def record_failure(self) -> None:
        """The batch as a whole failed: unreachable, timed out, or refused entirely."""
        state = self.state
        if state is CircuitState.OPEN:
            return
        self._failures += 1
        if state is CircuitState.HALF_OPEN:
            self._current_cooldown = min(self._current_cooldown * 2, self.max_cooldown)
            self._trip()
        elif self._failures >= self.failure_threshold:
            self._trip()

    def reset(self) -> None:
        """Close the breaker by hand (an operator knows the provider is back)."""
        self._open = False
        self._failures = 0
        self._current_cooldown = self.cooldown
        self._probe_started = None

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready summary for ``breach status``.

        ``retry_in`` is the number of seconds until an open breaker turns half-open (``None``
        otherwise): the clock is monotonic, so ``opened_until`` means nothing to a reader.
        """
        state = self.state
        now = self._clock()
        return {
            "state": state.value,
            "consecutive_failures": self._failures,
            "failure_threshold": self.failure_threshold,
            "cooldown": self._current_cooldown,
            "retry_in": self._opened_until - now if state is CircuitState.OPEN else None,
            "probe_in_flight": state is CircuitState.HALF_OPEN
            and self._probe_started is not None
            and now - self._probe_started < self.probe_timeout,
            "trips": self._trips,
        }

    def _trip(self) -> None:
        self._open = True
        self._opened_until = self._clock() + self._current_cooldown
        self._probe_started = None
        self._trips += 1
