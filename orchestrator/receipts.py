"""Delivery receipts: what providers report after the fact (delivered, bounced, undelivered).

Provider plugins register receipt handlers (hook ``register_receipts``); the server mounts each at
``/receipts/<name>``. A handler checks the provider's signature and turns the request into
:class:`ReceiptUpdate` objects; the ledger applies them. Handlers never touch the ledger.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from .errors import BreachError

ReceiptState = Literal["delivered", "failed"]


class ReceiptRejected(BreachError):
    """The request is not a genuine receipt (bad signature, wrong shape); answered 401 or 400."""

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ReceiptRequest:
    """An incoming receipt, framework-neutral.

    ``url`` is the full URL the provider called (providers sign it); ``headers`` have lower-case
    names; ``form`` is the parsed body when it is form-encoded, else empty. ``settings`` are the
    resolved settings of the notifiers the handler's plugin registers, exactly as those notifiers
    receive them (from the environment, or a file named by ``NAME_FILE``): a handler reads its
    credentials there and never resolves or reads the environment itself.
    """

    url: str
    method: str
    headers: Mapping[str, str]
    body: bytes
    form: Mapping[str, str] = field(default_factory=dict)
    settings: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ReceiptUpdate:
    """One delivery's fate, found by our delivery key or by the provider's message id."""

    state: ReceiptState
    delivery_key: str | None = None
    provider_id: str | None = None
    reason: str | None = None  # e.g. "bounce: mailbox does not exist", "undelivered: 30003"
    event: str = ""  # the provider's own word (delivered, bounce, dropped, undelivered...)


ReceiptHandler = Callable[[ReceiptRequest], Awaitable[Sequence[ReceiptUpdate]]]
