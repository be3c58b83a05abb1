"""Delivery receipts: what providers report after the fact (delivered, bounced, undelivered).

Provider plugins register receipt handlers (hook ``register_receipts``); the server mounts each at
``/receipts/<name>``. A handler checks the provider's signature and turns the request into
:class:`ReceiptUpdate` objects; the ledger applies them. Handlers never touch the ledger.

Each update carries a :class:`ReceiptOutcome`, the one word the core acts on: the ledger stores
it with the delivery and a playbook's fallback ``on: [bounce]`` or ``on: [undelivered]`` selects
on it. The update's ``reason`` is for people and is never parsed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from .errors import BreachError

ReceiptState = Literal["delivered", "failed"]


class ReceiptOutcome(StrEnum):
    """What a provider's receipt says became of one message.

    The values that name a fallback trigger (``bounce``, ``undelivered``) are the ones a
    playbook's ``fallback: {on: [...]}`` selects; every outcome but ``delivered`` also leaves the
    delivery ``failed``, which the ``failed`` trigger covers.
    """

    #: it reached the person: an SMS delivered or read, a call answered, an e-mail accepted by
    #: the recipient's mail server
    DELIVERED = "delivered"
    #: the e-mail address does not take mail: the receiving server refused it (bounced, blocked)
    #: or the provider did not try because the address is suppressed (dropped)
    BOUNCE = "bounce"
    #: the SMS or call did not reach the handset or the person: a carrier error, a failed or
    #: cancelled message, a call busy, unanswered or failed
    UNDELIVERED = "undelivered"
    #: any other final failure the provider reports
    FAILED = "failed"

    @property
    def state(self) -> ReceiptState:
        """The delivery state this outcome moves a delivery to."""
        return "delivered" if self is ReceiptOutcome.DELIVERED else "failed"


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
    """One delivery's fate, found by our delivery key or by the provider's message id.

    ``outcome`` is what the core acts on (a plain string such as ``"bounce"`` is accepted and
    converted; an unknown word raises ``ValueError``); ``reason`` is human text, e.g.
    "bounce: 550 mailbox does not exist"; ``event`` is the provider's own word (delivered,
    bounce, dropped, undelivered, no-answer...).
    """

    outcome: ReceiptOutcome
    delivery_key: str | None = None
    provider_id: str | None = None
    reason: str | None = None
    event: str = ""

    def __post_init__(self) -> None:
        # Handlers that build updates from JSON or a table pass the plain word.
        object.__setattr__(self, "outcome", ReceiptOutcome(self.outcome))

    @property
    def state(self) -> ReceiptState:
        """The delivery state the update moves its delivery to: delivered or failed."""
        return self.outcome.state


ReceiptHandler = Callable[[ReceiptRequest], Awaitable[Sequence[ReceiptUpdate]]]
