"""What the simulator remembers: requests, accepted messages, callbacks, counts.

One lock guards everything, because the aiohttp handlers run on the simulator's event-loop thread
while tests and benchmarks read and configure from their own threads. No method awaits while
holding it.
"""

from __future__ import annotations

import bisect
import itertools
import random
import secrets
import threading
import zlib
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from .config import PROVIDERS, ProviderConfig, SimulatorConfig, check_provider
from .faults import FaultDecision, TokenBucket, decide

__all__ = ["AcceptedMessage", "CallbackRecord", "RecordedRequest", "SimState", "SinkRecord"]


@dataclass(frozen=True)
class RecordedRequest:
    """One request as received, with how it ended.

    ``outcome`` is one of ``accepted``, ``partial`` (a batch with some items refused), ``sandbox``
    (validated, not delivered), ``rejected`` (4xx from validation or a magic value),
    ``unauthorized``, ``rate_limited`` (token bucket), ``throttled`` (injected 429), ``error``
    (injected 5xx), ``dropped`` and ``timeout`` (no answer: ``status`` is None), and
    ``lost_reply`` (processed, its messages accepted, but no answer: ``status`` is None).
    """

    seq: int
    provider: str
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    received_monotonic: float
    received_at: datetime
    outcome: str
    status: int | None
    message_ids: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``received_at`` as ISO 8601)."""
        data = asdict(self)
        data["received_at"] = self.received_at.isoformat()
        data["message_ids"] = list(self.message_ids)
        return data


@dataclass(frozen=True)
class AcceptedMessage:
    """One message a provider accepted for delivery: what tests compare with the ledger.

    ``delivery_id`` is the idempotency id the message carried: SendGrid
    ``custom_args.delivery_id`` (per personalization), FCM ``message.data.delivery_id``, the
    stand-in's ``delivery_id`` field, and for Twilio, which has no such field, a ``delivery_id``
    query parameter of the ``StatusCallback`` URL when there is one. ``body`` is the SMS text,
    the call's TwiML or URL, the e-mail subject or the push title and body.
    """

    provider: str
    channel: str
    message_id: str
    recipient: str
    delivery_id: str | None
    body: str | None
    request_seq: int
    accepted_monotonic: float
    accepted_at: datetime

    @property
    def key(self) -> str:
        """The identity used to count duplicates: the delivery id, else recipient and body."""
        return (
            self.delivery_id if self.delivery_id is not None else f"{self.recipient}\n{self.body}"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        data = asdict(self)
        data["accepted_at"] = self.accepted_at.isoformat()
        return data


@dataclass(frozen=True)
class CallbackRecord:
    """One receipt the simulator posted (or could not post)."""

    provider: str
    url: str
    payload: Any
    headers: dict[str, str]
    status: int | None
    error: str | None
    sent_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        data = asdict(self)
        data["sent_at"] = self.sent_at.isoformat()
        return data


@dataclass(frozen=True)
class SinkRecord:
    """A request received on ``/_sim/sink/{name}``, the built-in callback receiver."""

    name: str
    url: str
    headers: dict[str, str]
    text: str
    form: dict[str, str] | None
    json: Any
    received_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        data = asdict(self)
        data["received_at"] = self.received_at.isoformat()
        return data


@dataclass
class _ProviderCounts:
    requests: int = 0
    accepted_messages: int = 0
    duplicates: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    callbacks_sent: int = 0
    callbacks_failed: int = 0


class SimState:
    """The simulator's memory and its fault configuration; safe to use from any thread."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._seq = itertools.count(1)
        self._providers: dict[str, ProviderConfig] = {}
        self._rngs: dict[str, random.Random] = {}
        self._buckets: dict[str, TokenBucket | None] = {}
        self._requests: deque[RecordedRequest] = deque(maxlen=config.request_log_limit)
        self._accepted: list[AcceptedMessage] = []
        self._seen: dict[str, set[str]] = {}
        self._callbacks: list[CallbackRecord] = []
        self._sink: list[SinkRecord] = []
        self._counts: dict[str, _ProviderCounts] = {}
        #: access tokens the OAuth token endpoint granted and nobody revoked
        self._access_tokens: set[str] = set()
        self._grants = 0
        self._reset_locked()

    # -- configuration -------------------------------------------------------------------------

    def _seed_for(self, provider: str, cfg: ProviderConfig) -> int:
        if cfg.seed is not None:
            return cfg.seed
        # crc32, not hash(): str hashes are salted per process and would break reproducibility.
        return self.config.seed * 1_000_003 + zlib.crc32(provider.encode())

    def _install(self, provider: str, cfg: ProviderConfig) -> None:
        self._providers[provider] = cfg
        self._rngs[provider] = random.Random(self._seed_for(provider, cfg))
        self._buckets[provider] = (
            TokenBucket(cfg.rate_limit, cfg.burst or max(1.0, cfg.rate_limit))
            if cfg.rate_limit
            else None
        )

    def provider_config(self, provider: str) -> ProviderConfig:
        """The current settings of one provider."""
        with self._lock:
            return self._providers[check_provider(provider)]

    def configure(self, provider: str, **changes: Any) -> ProviderConfig:
        """Change some settings of one provider; its random sequence and bucket restart."""
        with self._lock:
            cfg = self._providers[check_provider(provider)].replace(**changes)
            self._install(provider, cfg)
            return cfg

    def replace_config(self, provider: str, cfg: ProviderConfig) -> None:
        """Install a whole configuration for one provider."""
        with self._lock:
            self._install(check_provider(provider), cfg)

    def reset(self) -> None:
        """Forget everything received and go back to the starting configuration."""
        with self._lock:
            self._reset_locked()

    def _reset_locked(self) -> None:
        self._access_tokens.clear()
        self._grants = 0
        self._requests.clear()
        self._accepted.clear()
        self._callbacks.clear()
        self._sink.clear()
        self._seen = {p: set() for p in PROVIDERS}
        self._counts = {p: _ProviderCounts() for p in PROVIDERS}
        for provider in PROVIDERS:
            self._install(provider, self.config.provider(provider))

    # -- OAuth access tokens (FCM with a service account) -------------------------------------

    def grant_access_token(self) -> str:
        """A new access token, valid until :meth:`revoke_access_tokens`."""
        token = f"sim-access-{secrets.token_urlsafe(16)}"
        with self._lock:
            self._access_tokens.add(token)
            self._grants += 1
        return token

    def access_token_valid(self, token: str) -> bool:
        """Whether the token endpoint granted ``token`` and it was not revoked since."""
        with self._lock:
            return token in self._access_tokens

    def revoke_access_tokens(self) -> int:
        """Make every granted token invalid, as an expiry or a rotated key would; returns how
        many there were."""
        with self._lock:
            revoked = len(self._access_tokens)
            self._access_tokens.clear()
        return revoked

    @property
    def grants(self) -> int:
        """Access tokens granted since the last reset."""
        with self._lock:
            return self._grants

    # -- per-request decisions -----------------------------------------------------------------

    def next_seq(self) -> int:
        """A process-wide request number (1, 2, ...)."""
        with self._lock:
            return next(self._seq)

    def decide(self, provider: str, now: float) -> tuple[ProviderConfig, FaultDecision]:
        """The provider's settings and the fault for a request that arrived at ``now``."""
        with self._lock:
            cfg = self._providers[provider]
            return cfg, decide(cfg, self._rngs[provider], self._buckets[provider], now)

    def random(self, provider: str) -> float:
        """The next draw of the provider's seeded generator (receipt outcomes use it)."""
        with self._lock:
            return self._rngs[provider].random()

    # -- recording -----------------------------------------------------------------------------

    def record(self, request: RecordedRequest, accepted: Iterable[AcceptedMessage] = ()) -> None:
        """Store one finished request and the messages it got accepted."""
        with self._lock:
            self._requests.append(request)
            counts = self._counts[request.provider]
            counts.requests += 1
            counts.outcomes[request.outcome] += 1
            counts.statuses["none" if request.status is None else str(request.status)] += 1
            seen = self._seen[request.provider]
            for message in accepted:
                self._accepted.append(message)
                counts.accepted_messages += 1
                if message.key in seen:
                    counts.duplicates += 1
                seen.add(message.key)

    def record_callback(self, record: CallbackRecord) -> None:
        """Store one receipt attempt."""
        with self._lock:
            self._callbacks.append(record)
            counts = self._counts[record.provider]
            if record.error is None and record.status is not None and record.status < 400:
                counts.callbacks_sent += 1
            else:
                counts.callbacks_failed += 1

    def record_sink(self, record: SinkRecord) -> None:
        """Store one request received by the built-in callback receiver."""
        with self._lock:
            self._sink.append(record)

    # -- reading -------------------------------------------------------------------------------

    def requests(self, provider: str | None = None) -> list[RecordedRequest]:
        """Recorded requests in arrival-completion order, optionally of one provider."""
        with self._lock:
            return [r for r in self._requests if provider is None or r.provider == provider]

    def accepted(self, provider: str | None = None) -> list[AcceptedMessage]:
        """Accepted messages, optionally of one provider."""
        with self._lock:
            return [m for m in self._accepted if provider is None or m.provider == provider]

    def per_second(self, provider: str | None = None) -> dict[int, int]:
        """Accepted messages per wall-clock second (the Unix second they were accepted in),
        optionally of one provider: what a provider counting fixed one-second windows sees."""
        with self._lock:
            return dict(Counter(int(m.accepted_at.timestamp()) for m in self._accepted
                                if provider is None or m.provider == provider))  # fmt: skip

    def busiest_window(self, provider: str | None = None, seconds: float = 1.0) -> int:
        """The most messages accepted within any ``seconds`` (a sliding window), optionally of
        one provider: what a provider counting sliding windows sees."""
        with self._lock:
            times = sorted(m.accepted_monotonic for m in self._accepted
                           if provider is None or m.provider == provider)  # fmt: skip
        return max((bisect.bisect_left(times, t + seconds) - i for i, t in enumerate(times)),
                   default=0)  # fmt: skip

    def callbacks(self, provider: str | None = None) -> list[CallbackRecord]:
        """Receipts posted, optionally of one provider."""
        with self._lock:
            return [c for c in self._callbacks if provider is None or c.provider == provider]

    def sink(self, name: str | None = None) -> list[SinkRecord]:
        """Requests the built-in receiver got, optionally under one name."""
        with self._lock:
            return [s for s in self._sink if name is None or s.name == name]

    def stats(self) -> dict[str, Any]:
        """Per provider: requests, outcomes, HTTP statuses, messages, duplicates, receipts."""
        with self._lock:
            return {
                provider: {
                    "requests": c.requests,
                    "accepted_messages": c.accepted_messages,
                    "duplicates": c.duplicates,
                    "outcomes": dict(c.outcomes),
                    "statuses": dict(c.statuses),
                    "callbacks": {"sent": c.callbacks_sent, "failed": c.callbacks_failed},
                }
                for provider, c in self._counts.items()
            }

    def faults(self) -> dict[str, dict[str, Any]]:
        """Current settings of every provider, JSON-ready."""
        with self._lock:
            return {p: cfg.to_dict() for p, cfg in self._providers.items()}
