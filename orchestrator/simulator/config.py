"""Configuration of the provider simulator: credentials, and per-provider faults and receipts."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = ["PROVIDERS", "ProviderConfig", "SimulatorConfig"]

#: The APIs the simulator answers, as they are named in records, stats and ``/_sim/faults``.
PROVIDERS: Final = ("standin", "twilio", "sendgrid", "fcm")


def check_provider(provider: str) -> str:
    if provider not in PROVIDERS:
        raise ValueError(f"unknown provider {provider!r}; expected one of {', '.join(PROVIDERS)}")
    return provider


@dataclass(frozen=True)
class ProviderConfig:
    """Faults and receipts of one provider. Times are seconds, rates are fractions 0..1.

    Every request first waits ``latency`` plus a uniform ``0..jitter``. A request above the token
    bucket (``rate_limit`` requests/second, ``burst`` tokens, default one second's worth) gets 429.
    Otherwise one seeded draw picks at most one fault, so the rates add up: ``drop_rate`` closes
    the connection without an answer, ``timeout_rate`` holds the request ``timeout_seconds`` and
    then closes it unanswered, ``lost_reply_rate`` processes the request (the message is accepted
    and recorded) but closes the connection instead of answering, the way duplicates are born,
    ``throttle_rate`` answers 429 with ``Retry-After: retry_after``,
    ``error_rate`` answers one of ``error_statuses``.

    Receipts: ``callback_url`` is where status callbacks go when a message names none (Twilio's
    ``StatusCallback`` wins; SendGrid's event webhook is account-wide, so it is only this).
    ``receipt_failure_rate`` of the accepted messages get a failure receipt (Twilio
    undelivered/failed, SendGrid bounce/dropped); ``callback_delay`` waits before each callback.
    """

    latency: float = 0.0
    jitter: float = 0.0
    error_rate: float = 0.0
    error_statuses: tuple[int, ...] = (500, 502, 503)
    throttle_rate: float = 0.0
    retry_after: float = 1.0
    drop_rate: float = 0.0
    timeout_rate: float = 0.0
    timeout_seconds: float = 30.0
    lost_reply_rate: float = 0.0
    rate_limit: float | None = None
    burst: float | None = None
    callback_url: str | None = None
    receipt_failure_rate: float = 0.0
    callback_delay: float = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in ("latency", "jitter", "retry_after", "timeout_seconds", "callback_delay"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a number of seconds >= 0, got {value!r}")
        rates = ("error_rate", "throttle_rate", "drop_rate", "timeout_rate", "lost_reply_rate")
        for name in (*rates, "receipt_failure_rate"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
                raise ValueError(f"{name} must be between 0 and 1, got {value!r}")
        if sum(getattr(self, name) for name in rates) > 1.0 + 1e-9:
            raise ValueError(f"{' + '.join(rates)} must not exceed 1")
        if not self.error_statuses or any(
            not isinstance(s, int) or not 500 <= s <= 599 for s in self.error_statuses
        ):
            raise ValueError(f"error_statuses must be 5xx codes, got {self.error_statuses!r}")
        for name in ("rate_limit", "burst"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int | float) and value > 0):
                raise ValueError(f"{name} must be > 0 or None, got {value!r}")

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """The names :meth:`replace` and ``POST /_sim/faults`` accept."""
        return tuple(f.name for f in dataclasses.fields(cls))

    def replace(self, **changes: Any) -> ProviderConfig:
        """A copy with ``changes`` applied; an unknown key is an error, never ignored."""
        unknown = sorted(set(changes) - set(self.keys()))
        if unknown:
            raise ValueError(
                f"unknown fault setting(s) {', '.join(unknown)}; known: {', '.join(self.keys())}"
            )
        if "error_statuses" in changes and changes["error_statuses"] is not None:
            # JSON gives a list; keep the dataclass hashable and immutable.
            changes["error_statuses"] = tuple(changes["error_statuses"])
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings."""
        data = dataclasses.asdict(self)
        data["error_statuses"] = list(self.error_statuses)
        return data


#: A syntactically valid Account SID ("AC" + 32 hex digits) that no real account has.
DEFAULT_TWILIO_ACCOUNT_SID: Final = "AC" + "0" * 31 + "1"


@dataclass(frozen=True)
class SimulatorConfig:
    """Everything the simulator starts with.

    The credentials are the ones clients must present: Twilio HTTP Basic (account SID and auth
    token), SendGrid and FCM bearer tokens, and an optional bearer token for the stand-in (None:
    no auth). ``seed`` seeds each provider's random draws (a provider's own ``seed`` wins).
    Callbacks go only to loopback addresses unless ``allow_remote_callbacks``.
    ``request_log_limit`` keeps only the newest requests in memory (None: all of them); accepted
    messages are always all kept.
    """

    twilio_account_sid: str = DEFAULT_TWILIO_ACCOUNT_SID
    twilio_auth_token: str = "simulator-twilio-auth-token"
    sendgrid_api_key: str = "SG.simulator.api-key"
    fcm_access_token: str = "simulator-fcm-access-token"
    standin_token: str | None = None
    seed: int = 0
    providers: Mapping[str, ProviderConfig] = field(default_factory=dict)
    allow_remote_callbacks: bool = False
    request_log_limit: int | None = None

    def __post_init__(self) -> None:
        for name in self.providers:
            check_provider(name)
        if self.request_log_limit is not None and self.request_log_limit < 1:
            raise ValueError("request_log_limit must be >= 1 or None")

    def provider(self, name: str) -> ProviderConfig:
        """The starting configuration of one provider (defaults when not given)."""
        return self.providers.get(check_provider(name), ProviderConfig())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SimulatorConfig:
        """Build from parsed JSON/YAML: top-level fields plus ``providers: {name: {faults}}``."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown simulator setting(s) {', '.join(unknown)}")
        values = dict(data)
        providers = values.pop("providers", None) or {}
        if not isinstance(providers, Mapping):
            raise ValueError("providers must be a mapping of provider name to settings")
        built = {
            check_provider(str(name)): ProviderConfig().replace(**dict(settings or {}))
            for name, settings in providers.items()
        }
        return cls(providers=built, **values)
