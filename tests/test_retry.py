"""Retry policy: backoff bounds, caps, the Retry-After floor, and the header parsers."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

import pytest

from orchestrator.retry import (
    MAX_RETRY_AFTER,
    RetryPolicy,
    parse_rate_limit_reset,
    parse_retry_after,
)

NOW = datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC)


def test_defaults() -> None:
    policy = RetryPolicy()
    assert (policy.max_attempts, policy.base, policy.cap, policy.jitter) == (8, 1.0, 300.0, "full")


def test_full_jitter_stays_within_the_exponential_ceiling() -> None:
    policy = RetryPolicy(base=1.0, cap=300.0)
    rng = random.Random(7)
    for attempt in range(1, 15):
        ceiling = min(300.0, 2.0 ** (attempt - 1))
        waits = [policy.delay(attempt, None, rng) for _ in range(400)]
        assert all(0.0 <= w <= ceiling for w in waits)
        # Spread over the whole range, not stuck at one end.
        assert min(waits) < ceiling * 0.1
        assert max(waits) > ceiling * 0.9


def test_ceiling_doubles_then_stays_at_the_cap() -> None:
    policy = RetryPolicy(base=0.5, cap=20.0)
    ceilings = [policy.ceiling(k) for k in range(1, 12)]
    assert ceilings[:7] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 20.0]
    assert ceilings == sorted(ceilings)
    assert set(ceilings[6:]) == {20.0}
    assert policy.ceiling(10_000) == 20.0  # no overflow for absurd attempt counts


def test_equal_and_no_jitter() -> None:
    rng = random.Random(1)
    equal = RetryPolicy(jitter="equal", base=2.0, cap=60.0)
    assert all(4.0 <= equal.delay(3, None, rng) <= 8.0 for _ in range(200))
    none = RetryPolicy(jitter="none", base=2.0, cap=60.0)
    assert [none.delay(k) for k in range(1, 7)] == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0]


def test_same_seed_same_delays() -> None:
    policy = RetryPolicy()
    first = [policy.delay(k, None, random.Random(42)) for k in range(1, 9)]
    again = [policy.delay(k, None, random.Random(42)) for k in range(1, 9)]
    assert first == again


def test_retry_after_is_a_floor_even_above_the_cap() -> None:
    policy = RetryPolicy(base=1.0, cap=30.0)
    rng = random.Random(3)
    assert all(policy.delay(1, 12.5, rng) >= 12.5 for _ in range(200))
    assert policy.delay(2, 120.0, rng) == 120.0  # above cap: the provider knows best
    # When the backoff is already longer, Retry-After does not shorten it.
    assert RetryPolicy(jitter="none", cap=600.0).delay(9, 5.0) == 256.0


def test_absurd_retry_after_is_clamped_and_nonsense_ignored() -> None:
    policy = RetryPolicy(jitter="none")
    assert policy.delay(1, 10 * 86400.0) == MAX_RETRY_AFTER == 3600.0
    assert policy.delay(1, float("inf")) == 1.0
    assert policy.delay(1, float("nan")) == 1.0
    assert policy.delay(1, -30.0) == 1.0
    assert policy.delay(1, 0.0) == 1.0


def test_exhausted_counts_every_attempt() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert [policy.exhausted(k) for k in range(0, 5)] == [False, False, False, True, True]
    assert RetryPolicy(max_attempts=1).exhausted(1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"base": 0.0},
        {"base": float("nan")},
        {"cap": 0.5},
        {"cap": float("inf")},
        {"jitter": "sometimes"},
    ],
)
def test_invalid_policy_is_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_attempt_counts_from_one() -> None:
    with pytest.raises(ValueError):
        RetryPolicy().delay(0)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        ("0", 0.0),
        (" 7 ", 7.0),
        ("1.5", 1.5),
        # The three HTTP-date forms of RFC 9110, all 90 s after NOW.
        ("Wed, 25 Nov 2026 10:01:30 GMT", 90.0),
        ("Wednesday, 25-Nov-26 10:01:30 GMT", 90.0),
        ("Wed Nov 25 10:01:30 2026", 90.0),
        # Not GMT as the RFC wants, but unambiguous.
        ("Wed, 25 Nov 2026 11:01:30 +0100", 90.0),
        # A date already passed: go now.
        ("Wed, 25 Nov 2026 09:00:00 GMT", 0.0),
    ],
)
def test_parse_retry_after(header: str, seconds: float) -> None:
    assert parse_retry_after(header, now=NOW) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "header",
    [None, "", "   ", "soon", "-5", "+5", "1e3", "inf", "nan", "12 s", "Wed, 25 Nov", "9" * 400],
)
def test_parse_retry_after_garbage_is_none(header: str | None) -> None:
    assert parse_retry_after(header, now=NOW) is None


def test_parse_retry_after_with_naive_or_default_now() -> None:
    naive = NOW.replace(tzinfo=None)
    assert parse_retry_after("Wed, 25 Nov 2026 10:00:10 GMT", now=naive) == pytest.approx(10.0)
    plus_two = NOW.astimezone(timezone(timedelta(hours=2)))
    assert parse_retry_after("Wed, 25 Nov 2026 10:00:10 GMT", now=plus_two) == pytest.approx(10.0)
    # Without now: the current time, so a date a minute ahead is about 60 s away.
    ahead = datetime.now(UTC) + timedelta(minutes=1)
    header = ahead.strftime("%a, %d %b %Y %H:%M:%S GMT")
    wait = parse_retry_after(header)
    assert wait is not None and 55.0 <= wait <= 60.0


def test_parse_rate_limit_reset() -> None:
    now = 1_795_000_000.0
    assert parse_rate_limit_reset("1795000042", now=now) == 42.0
    assert parse_rate_limit_reset("1795000042.5", now=now) == 42.5
    assert parse_rate_limit_reset("1794999000", now=now) == 0.0  # already reset
    assert parse_rate_limit_reset("1795000042000", now=now) == 42.0  # milliseconds
    assert parse_rate_limit_reset("30", now=now) == 30.0  # seconds from now, not 1970
    assert parse_rate_limit_reset(str(int(now) + 5)) is not None


@pytest.mark.parametrize("header", [None, "", "tomorrow", "-1", "1e9", "0x10", "9" * 400])
def test_parse_rate_limit_reset_garbage_is_none(header: str | None) -> None:
    assert parse_rate_limit_reset(header, now=1_795_000_000.0) is None


def test_parsed_headers_feed_the_policy() -> None:
    wait = parse_retry_after("Wed, 25 Nov 2026 10:05:00 GMT", now=NOW)
    assert RetryPolicy(cap=60.0).delay(1, wait, random.Random(0)) == 300.0
