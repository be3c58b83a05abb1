"""Retry timing: exponential backoff with jitter, and the providers' own "come back later" headers.

The delivery engine asks :class:`RetryPolicy` how long to wait before attempt ``k + 1`` after
``k`` failed attempts, and whether the delivery is out of attempts (it then goes to the dead letter
with a reason). Providers that throttle say when to come back, in one of two shapes:

- ``Retry-After`` (RFC 9110, section 10.2.3): delta-seconds or an HTTP-date; read it with
  :func:`parse_retry_after`;
- epoch-seconds reset headers such as SendGrid's ``X-RateLimit-Reset``; read them with
  :func:`parse_rate_limit_reset`.

Either becomes the ``retry_after`` argument of :meth:`RetryPolicy.delay`, which treats it as a
floor: never come back earlier than the provider asked.
"""

from __future__ import annotations

import math
import random
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Literal

__all__ = [
    "MAX_RETRY_AFTER",
    "Jitter",
    "RetryPolicy",
    "parse_rate_limit_reset",
    "parse_retry_after",
]

# A provider asking for more than an hour is more likely broken (or a header in the wrong unit)
# than serious; a campaign against a statutory deadline should not stall on it. An hour still
# respects any real throttle we have seen, and the attempts left will try again after it.
MAX_RETRY_AFTER = 3600.0

Jitter = Literal["full", "equal", "none"]

_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?")  # non-negative; no sign, exponent, inf or nan
# Below this an "epoch" reset is read as seconds from now (2001-09-09 is long past); above the
# second bound it is read as milliseconds.
_EPOCH_SECONDS_MIN = 1e9
_EPOCH_MILLIS_MIN = 1e12
# 2**64 seconds of backoff is already past any cap; higher exponents would overflow a float.
_MAX_EXPONENT = 64

_default_rng = random.Random()


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long apart a failed delivery is tried again.

    ``max_attempts`` counts every attempt, the first one included. The wait after the ``k``-th
    failed attempt grows as ``base * 2**(k-1)`` up to ``cap`` seconds, with jitter:

    - ``"full"`` (default): uniform in ``[0, ceiling]``, which spreads a crowd of retries best;
    - ``"equal"``: uniform in ``[ceiling / 2, ceiling]``, never shorter than half the ceiling;
    - ``"none"``: exactly the ceiling.
    """

    max_attempts: int = 8
    base: float = 1.0
    cap: float = 300.0
    jitter: Jitter = "full"

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, not {self.max_attempts}")
        if not (math.isfinite(self.base) and self.base > 0):
            raise ValueError(f"base must be a positive number of seconds, not {self.base}")
        if not (math.isfinite(self.cap) and self.cap >= self.base):
            raise ValueError(f"cap must be at least base ({self.base}), not {self.cap}")
        if self.jitter not in ("full", "equal", "none"):
            raise ValueError(f"jitter must be 'full', 'equal' or 'none', not {self.jitter!r}")

    def ceiling(self, attempt: int) -> float:
        """The longest backoff after ``attempt`` failed attempts, before any ``Retry-After``."""
        if attempt < 1:
            raise ValueError(f"attempt counts failed attempts from 1, not {attempt}")
        return min(self.cap, self.base * 2.0 ** min(attempt - 1, _MAX_EXPONENT))

    def delay(
        self,
        attempt: int,
        retry_after: float | None = None,
        rng: random.Random | None = None,
    ) -> float:
        """Seconds to wait after ``attempt`` failed attempts (1 after the first failure).

        ``retry_after`` is what the provider asked for (see :func:`parse_retry_after`). It is a
        floor, above ``cap`` too, since coming back earlier only earns another refusal; values
        above :data:`MAX_RETRY_AFTER` are clamped to it, and negative or non-finite ones ignored.
        ``rng`` makes the jitter reproducible in tests.
        """
        ceiling = self.ceiling(attempt)
        rng = rng or _default_rng
        if self.jitter == "full":
            wait = rng.uniform(0.0, ceiling)
        elif self.jitter == "equal":
            wait = rng.uniform(ceiling / 2, ceiling)
        else:
            wait = ceiling
        if retry_after is not None and math.isfinite(retry_after) and retry_after > 0:
            wait = max(wait, min(retry_after, MAX_RETRY_AFTER))
        return wait

    def exhausted(self, attempts: int) -> bool:
        """True once ``attempts`` attempts have been made and none may follow."""
        return attempts >= self.max_attempts


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait according to a ``Retry-After`` header, or ``None`` if it says nothing usable.

    Both forms of RFC 9110 are read: delta-seconds (``"120"``; a decimal fraction is tolerated)
    and an HTTP-date (``"Wed, 21 Oct 2015 07:28:00 GMT"``, and the obsolete RFC 850 and asctime
    forms). A date in the past means "now" (``0.0``). ``now`` defaults to the current UTC time;
    a naive ``now`` or date is taken as UTC, as HTTP-dates always are.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if _NUMBER.fullmatch(text):
        seconds = float(text)
        return seconds if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    now = now or datetime.now(UTC)
    return max(0.0, (_as_utc(when) - _as_utc(now)).total_seconds())


def parse_rate_limit_reset(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait according to an epoch-seconds reset header (e.g. ``X-RateLimit-Reset``).

    ``now`` is the current epoch time (``time.time()`` by default). A reset in the past means
    ``0.0``. Some providers put other units in headers of the same name, so a small value
    (before 2001) is read as seconds from now and a huge one as epoch milliseconds. Anything that
    is not a non-negative number gives ``None``.
    """
    if value is None:
        return None
    text = value.strip()
    if not _NUMBER.fullmatch(text):
        return None
    reset = float(text)
    if not math.isfinite(reset):
        return None
    if reset < _EPOCH_SECONDS_MIN:
        return reset
    if reset >= _EPOCH_MILLIS_MIN:
        reset /= 1000.0
    now = time.time() if now is None else now
    return max(0.0, reset - now)


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
