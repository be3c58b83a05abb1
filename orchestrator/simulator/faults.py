"""Fault decisions: a token bucket per provider and one seeded draw per request."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal

from .config import ProviderConfig

__all__ = ["FaultDecision", "TokenBucket", "decide"]

FaultKind = Literal["none", "rate_limited", "drop", "timeout", "lost_reply", "throttle", "error"]


class TokenBucket:
    """``rate`` tokens per second, at most ``capacity`` stored; starts full.

    Not locked: the simulator state calls it under its own lock.
    """

    def __init__(self, rate: float, capacity: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.stamp: float | None = None

    def take(self, now: float) -> float:
        """Take one token; 0.0 when granted, else the seconds until one will be there."""
        if self.stamp is not None:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


@dataclass(frozen=True)
class FaultDecision:
    """What happens to one request before the provider logic sees it."""

    kind: FaultKind
    delay: float = 0.0
    status: int | None = None
    retry_after: float | None = None

    @property
    def retry_after_header(self) -> str | None:
        """``Retry-After`` in whole seconds (the header takes integers), rounded up."""
        if self.retry_after is None:
            return None
        return str(math.ceil(self.retry_after))


def decide(
    config: ProviderConfig, rng: random.Random, bucket: TokenBucket | None, now: float
) -> FaultDecision:
    """Pick the fault (if any) for one request; ``now`` is a monotonic clock reading.

    The uniform draw is taken for every request, limited or not, so a seed gives the same
    sequence of faults whatever the rate limit does.
    """
    delay = config.latency + (rng.uniform(0.0, config.jitter) if config.jitter else 0.0)
    draw = rng.random()
    status_pick = rng.choice(config.error_statuses)
    if bucket is not None:
        wait = bucket.take(now)
        if wait > 0.0:
            return FaultDecision("rate_limited", delay, 429, wait)
    edge = config.drop_rate
    if draw < edge:
        return FaultDecision("drop", delay)
    edge += config.timeout_rate
    if draw < edge:
        return FaultDecision("timeout", delay)
    edge += config.lost_reply_rate
    if draw < edge:
        return FaultDecision("lost_reply", delay)
    edge += config.throttle_rate
    if draw < edge:
        return FaultDecision("throttle", delay, 429, config.retry_after)
    edge += config.error_rate
    if draw < edge:
        return FaultDecision("error", delay, status_pick)
    return FaultDecision("none", delay)
