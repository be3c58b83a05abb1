"""Circuit breaker: thresholds, cooldowns, the single half-open probe, and the snapshot."""

from __future__ import annotations

import json

import pytest

from orchestrator.circuit import CircuitBreaker, CircuitState


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def breaker(clock: FakeClock, **kwargs: float) -> CircuitBreaker:
    options: dict[str, float] = {"failure_threshold": 3, "cooldown": 10.0, "max_cooldown": 35.0}
    options.update(kwargs)
    return CircuitBreaker(
        failure_threshold=int(options.pop("failure_threshold")), clock=clock, **options
    )


def state(cb: CircuitBreaker) -> CircuitState:
    # Read through a call so the type checker does not carry one assertion's narrowing forward.
    return cb.state


def fail(cb: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        cb.record_failure()


def test_defaults() -> None:
    cb = CircuitBreaker()
    assert (cb.failure_threshold, cb.cooldown, cb.max_cooldown) == (5, 30.0, 300.0)
    assert state(cb) is CircuitState.CLOSED and cb.allow()


def test_opens_after_threshold_consecutive_failures() -> None:
    clock = FakeClock()
    cb = breaker(clock)
    fail(cb, 2)
    assert state(cb) is CircuitState.CLOSED and cb.allow()
    cb.record_failure()
    assert state(cb) is CircuitState.OPEN
    assert not cb.allow()
    assert cb.opened_until == 1010.0


def test_a_success_resets_the_failure_count() -> None:
    cb = breaker(FakeClock())
    fail(cb, 2)
    cb.record_success()
    fail(cb, 2)
    assert state(cb) is CircuitState.CLOSED
    assert cb.consecutive_failures == 2
    cb.record_failure()
    assert state(cb) is CircuitState.OPEN


def test_half_open_after_cooldown_lets_exactly_one_probe_through() -> None:
    clock = FakeClock()
    cb = breaker(clock)
    fail(cb, 3)
    clock.now += 9.999
    assert not cb.allow()
    clock.now += 0.001
    assert state(cb) is CircuitState.HALF_OPEN
    assert cb.opened_until is None
    assert cb.allow()  # the probe
    assert not cb.allow()
    assert not cb.allow()
    assert cb.snapshot()["probe_in_flight"] is True


def test_successful_probe_closes_and_resets_cooldown() -> None:
    clock = FakeClock()
    cb = breaker(clock)
    fail(cb, 3)
    clock.now += 10
    assert cb.allow()
    cb.record_failure()  # failed probe: 20 s now
    clock.now += 20
    assert cb.allow()
    cb.record_success()
    assert state(cb) is CircuitState.CLOSED
    assert cb.consecutive_failures == 0
    assert all(cb.allow() for _ in range(5))
    # The next trip starts again from the base cooldown.
    fail(cb, 3)
    assert cb.opened_until == clock.now + 10.0


def test_failed_probes_double_the_cooldown_up_to_the_maximum() -> None:
    clock = FakeClock()
    cb = breaker(clock)
    fail(cb, 3)
    cooldowns = []
    for _ in range(5):
        opened_until = cb.opened_until
        assert opened_until is not None
        cooldowns.append(opened_until - clock.now)
        clock.now = opened_until
        assert cb.allow()
        cb.record_failure()
        assert state(cb) is CircuitState.OPEN
    assert cooldowns == [10.0, 20.0, 35.0, 35.0, 35.0]


def test_results_reported_while_open_are_ignored() -> None:
    clock = FakeClock()
    cb = breaker(clock)
    fail(cb, 3)
    opened_until = cb.opened_until
    cb.record_success()  # a late answer to a batch sent before the breaker opened
    cb.record_failure()
    assert state(cb) is CircuitState.OPEN
    assert cb.opened_until == opened_until


def test_a_lost_probe_is_replaced_after_the_probe_timeout() -> None:
    clock = FakeClock()
    cb = breaker(clock, probe_timeout=60.0)
    fail(cb, 3)
    clock.now += 10
    assert cb.allow()
    clock.now += 59
    assert not cb.allow()
    clock.now += 1
    assert cb.allow()
    assert not cb.allow()


def test_threshold_of_one() -> None:
    cb = breaker(FakeClock(), failure_threshold=1)
    cb.record_failure()
    assert state(cb) is CircuitState.OPEN


def test_reset_closes_by_hand() -> None:
    clock = FakeClock()
    cb = breaker(clock)
    fail(cb, 3)
    cb.reset()
    assert state(cb) is CircuitState.CLOSED and cb.allow()
    fail(cb, 2)
    assert state(cb) is CircuitState.CLOSED


def test_snapshot_is_json_ready_and_tells_when_to_expect_a_probe() -> None:
    clock = FakeClock()
    cb = breaker(clock)
    assert cb.snapshot() == {
        "state": "closed",
        "consecutive_failures": 0,
        "failure_threshold": 3,
        "cooldown": 10.0,
        "retry_in": None,
        "probe_in_flight": False,
        "trips": 0,
    }
    fail(cb, 3)
    clock.now += 4
    snap = cb.snapshot()
    assert snap["state"] == "open"
    assert snap["retry_in"] == pytest.approx(6.0)
    assert snap["consecutive_failures"] == 3
    assert snap["trips"] == 1
    json.dumps(snap)
    clock.now += 6
    assert cb.snapshot()["state"] == "half_open"
    assert cb.snapshot()["probe_in_flight"] is False


@pytest.mark.parametrize(
    "kwargs",
    [
        {"failure_threshold": 0},
        {"cooldown": 0.0},
        {"cooldown": 10.0, "max_cooldown": 5.0},
        {"probe_timeout": 0.0},
    ],
)
def test_invalid_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        breaker(FakeClock(), **kwargs)
