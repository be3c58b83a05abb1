"""The contract every simulated provider API follows, and helpers they share."""

from __future__ import annotations

import hmac
import json
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qs

from aiohttp import web

from .config import ProviderConfig
from .faults import FaultDecision
from .state import AcceptedMessage, SimState

if TYPE_CHECKING:
    from .callbacks import CallbackDispatcher

__all__ = [
    "Handled",
    "Incoming",
    "ProviderAPI",
    "bearer_token",
    "flatten_form",
    "form_fields",
    "gateway_error",
    "json_body",
    "same_secret",
]

#: A receipt to send later: called with the dispatcher on the simulator's event loop.
Callback = Callable[["CallbackDispatcher"], Awaitable[None]]


@dataclass(frozen=True)
class Incoming:
    """One request that got past the fault layer, as a provider API sees it."""

    request: web.Request
    provider: str
    seq: int
    raw: bytes
    body: Any
    received_monotonic: float
    received_at: datetime
    config: ProviderConfig
    state: SimState


@dataclass
class Handled:
    """What a provider API decided: the answer, the outcome, accepted messages and receipts."""

    response: web.StreamResponse
    outcome: str
    accepted: list[AcceptedMessage] = field(default_factory=list)
    callbacks: list[Callback] = field(default_factory=list)


class ProviderAPI(ABC):
    """One provider's HTTP API: its routes, its error shapes and its acceptance logic."""

    name: ClassVar[str]

    @abstractmethod
    def routes(self) -> list[tuple[str, str]]:
        """``(method, path pattern)`` pairs this API answers."""

    def parse_body(self, raw: bytes, content_type: str) -> Any:
        """The body as recorded: JSON when it parses, else text."""
        return json_body(raw)

    @abstractmethod
    def throttled(self, decision: FaultDecision, config: ProviderConfig) -> web.Response:
        """The provider's 429 (``Retry-After`` is added by the caller)."""

    @abstractmethod
    def server_error(self, status: int) -> web.Response:
        """The provider's 5xx answer for ``status``."""

    @abstractmethod
    async def handle(self, incoming: Incoming) -> Handled:
        """Authenticate, validate and accept (or refuse) one request."""


def gateway_error(status: int) -> web.Response:
    """A 5xx as the load balancer in front of an API sends it: HTML, not the API's JSON."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Server Error"
    return web.Response(
        status=status,
        text=f"<html><head><title>{status} {phrase}</title></head>"
        f"<body><h1>{status} {phrase}</h1></body></html>",
        content_type="text/html",
    )


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison that also accepts non-ASCII input."""
    return hmac.compare_digest(given.encode(), expected.encode())


def bearer_token(request: web.Request) -> str | None:
    """The token of an ``Authorization: Bearer ...`` header, if there is one."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def json_body(raw: bytes) -> Any:
    """Parsed JSON, or the text when it is not JSON (recorded as it came)."""
    text = raw.decode("utf-8", errors="replace")
    try:
        return json.loads(text) if text else None
    except ValueError:
        return text


def form_fields(raw: bytes) -> dict[str, list[str]]:
    """An ``application/x-www-form-urlencoded`` body, every value kept in order."""
    return parse_qs(raw.decode("utf-8", errors="replace"), keep_blank_values=True)


def flatten_form(fields: dict[str, list[str]]) -> dict[str, str | list[str]]:
    """Single values as strings, repeated ones as lists: how a request is recorded."""
    return {k: v[0] if len(v) == 1 else list(v) for k, v in fields.items()}
